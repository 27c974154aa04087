// `npm start`: warn on an unsupported Node, build when dist/ is missing or older than src/, then run the
// server in this process's place (signals reach it directly, so SIGTERM drains requests as in production).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// The browser helper (src/browser/ into dist/browser/) has its own build, which checks its own age.
const helper = new Set([join(root, 'src', 'browser'), join(root, 'dist', 'browser')]);

// package.json's `engines`: ^22.13.0 || >=24. Older runtimes mostly work, so warn and go on.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 13) || major === 23) {
  console.warn(
    `token-broker: Node ${process.versions.node} is not supported (use Node 22.13+ or 24); starting anyway`,
  );
}
const newest = (dir) =>
  readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
    const path = join(dir, entry.name);
    if (helper.has(path)) return latest;
    return Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }, 0);

const run = (script, args) => {
  const build = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
};

const entry = join(root, 'dist', 'main.js');
if (!existsSync(entry) || newest(join(root, 'src')) > newest(join(root, 'dist'))) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) {
    console.error(
      'dist/ is missing or stale and TypeScript is not installed: run `npm install` (or `npm run build`) first',
    );
    process.exit(1);
  }
  run(tsc, ['-p', join(root, 'tsconfig.build.json')]);
}
run(join(root, 'scripts', 'buildClient.mjs'), ['--if-stale']);
await import(entry);
