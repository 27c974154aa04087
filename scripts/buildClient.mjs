// Builds the browser helper from src/browser/ into dist/browser/: client.js, one minified ES module
// without dependencies (served at /client.js, exported as `token-broker/client`), and client.d.ts, its
// declarations bundled into one file; and the proof-of-work solver the helper loads only when the broker
// asks for a `pow` proof: pow.js (an ES module) and pow-worker.js (its Web Worker, a classic script).
// Prints both sizes of client.js, minified and gzipped, and the gzipped size of the solver.
//   --if-stale   build only when an output is missing or older than a source (test runs, `npm start`)
//   --outdir D   write to D instead of dist/browser
import { mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { 'if-stale': { type: 'boolean' }, outdir: { type: 'string' } } });
const outdir = values.outdir ?? join(root, 'dist', 'browser');
const entry = join(root, 'src', 'browser', 'client.ts');
const solverEntries = [
  { entry: join(root, 'src', 'browser', 'pow', 'solve.ts'), output: join(outdir, 'pow.js'), format: 'esm' },
  {
    entry: join(root, 'src', 'browser', 'pow', 'worker.ts'),
    output: join(outdir, 'pow-worker.js'),
    format: 'iife',
  },
];
const outputs = [
  join(outdir, 'client.js'),
  join(outdir, 'client.d.ts'),
  ...solverEntries.map(({ output }) => output),
];

const mtime = (path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs;
// The helper's sources, the server's error codes its types name, and how they are built.
const sources = [
  ...readdirSync(join(root, 'src', 'browser'), { recursive: true }).map((name) =>
    join(root, 'src', 'browser', name),
  ),
  join(root, 'src', 'errors.ts'),
  join(root, 'tsconfig.browser.json'),
  fileURLToPath(import.meta.url),
];
const stale = () => {
  const built = Math.min(...outputs.map((path) => mtime(path) ?? 0));
  return sources.some((path) => (mtime(path) ?? 0) > built);
};

if (!values['if-stale'] || stale()) {
  // Imported only to build: a production install without dev dependencies can still check the age.
  const devDependency = (name) =>
    import(name).catch(() => {
      console.error(
        `The browser helper needs building and ${name} is not installed: run \`npm install\` first`,
      );
      process.exit(1);
    });
  const { build } = await devDependency('esbuild');
  const { generateDtsBundle } = await devDependency('dts-bundle-generator');
  const bundleOf = async (entryPoint, format) =>
    (
      await build({
        entryPoints: [entryPoint],
        bundle: true,
        format,
        platform: 'neutral',
        target: 'es2022',
        minify: true,
        // The exported class keeps its name (`BrokerClientError.name`), and stack traces name the functions.
        keepNames: true,
        write: false,
        tsconfig: join(root, 'tsconfig.browser.json'),
      })
    ).outputFiles[0].contents;
  const code = await bundleOf(entry, 'esm');
  const solver = await Promise.all(solverEntries.map(({ entry: path, format }) => bundleOf(path, format)));
  const [declarations] = generateDtsBundle(
    [{ filePath: entry, output: { noBanner: true, exportReferencedTypes: false } }],
    {
      preferredConfigPath: join(root, 'tsconfig.browser.json'),
    },
  );
  mkdirSync(outdir, { recursive: true });
  // Written aside and renamed, so a server reading the files never sees half of one.
  const place = (path, contents) => {
    writeFileSync(`${path}.${process.pid}.tmp`, contents);
    renameSync(`${path}.${process.pid}.tmp`, path);
  };
  place(outputs[0], code);
  place(outputs[1], declarations);
  for (const [index, { output }] of solverEntries.entries()) place(output, solver[index]);
  const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
  console.log(
    `client.js: ${kib(code.length)} minified, ${kib(gzipSync(code, { level: 9 }).length)} gzipped (${outdir})`,
  );
  console.log(
    `pow.js + pow-worker.js (loaded only for a pow proof): ${kib(solver.reduce((sum, part) => sum + gzipSync(part, { level: 9 }).length, 0))} gzipped`,
  );
}
