import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateSigningKey } from '../../src/cli/jwks.js';
import { freePort } from '../support/freePort.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

/**
 * No Docker engine runs here, so this replays the runtime stage of the Dockerfile in a temporary
 * directory: the production install from the lock file, the compiled `dist/` (with the browser helper in
 * `dist/browser/`), `public/` and `bin/`, then
 * `node dist/main.js` with a production configuration against a real authorization server.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

interface Run {
  code: number | null;
  output: string;
}

function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString('utf8');
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return jsFiles(path);
    return entry.name.endsWith('.js') ? [path] : [];
  });
}

/** The part of package-lock.json this test reads. */
interface LockFile {
  packages: Record<string, { dev?: boolean }>;
}

/** `lodash/fp` → `lodash`, `@scope/pkg/sub` → `@scope/pkg`. */
const packageName = (specifier: string) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');

describe('the Docker image steps, replayed in a temporary directory', () => {
  let dir: string;
  let auth: TestAuthServer;
  let broker: ChildProcess | undefined;
  let url: string;
  let metricsUrl: string;
  let env: NodeJS.ProcessEnv;
  let logs = '';
  let exited: Promise<number | null>;
  const apiKey = registerSecret('image broker api key', `image-${randomBytes(24).toString('base64url')}`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'token-broker-image-'));
    // COPY package.json package-lock.json ./ && RUN npm ci --omit=dev
    cpSync(join(root, 'package.json'), join(dir, 'package.json'));
    cpSync(join(root, 'package-lock.json'), join(dir, 'package-lock.json'));
    // The install and the build stage's `npm run build` (written straight into the runtime directory)
    // do not depend on each other, as in the Dockerfile's two stages: they run side by side.
    // `--noCheck`: the emitted JavaScript is the same (isolatedModules), and the type check of these
    // sources is `npm run typecheck`'s job; here it would only double the compiler's time.
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const [install, build, helper] = await Promise.all([
      run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], dir),
      run(
        process.execPath,
        [
          tsc,
          '-p',
          'tsconfig.build.json',
          '--outDir',
          join(dir, 'dist'),
          '--declaration',
          'false',
          '--sourceMap',
          'false',
          '--noCheck',
        ],
        root,
      ),
      run(process.execPath, ['scripts/buildClient.mjs', '--outdir', join(dir, 'dist', 'browser')], root),
    ]);
    expect(install.code, install.output).toBe(0);
    expect(build.code, build.output).toBe(0);
    expect(helper.code, helper.output).toBe(0);
    cpSync(join(root, 'public'), join(dir, 'public'), { recursive: true });
    cpSync(join(root, 'bin'), join(dir, 'bin'), { recursive: true });

    auth = await startTestAuthServer();
    const signingKeys = JSON.stringify({ keys: [await generateSigningKey('EdDSA')] });
    registerSecret('image signing keys', signingKeys);
    const port = await freePort();
    const metricsPort = await freePort();
    url = `http://127.0.0.1:${port}`;
    metricsUrl = `http://127.0.0.1:${metricsPort}`;
    // Only what the image's environment would hold: no NODE_OPTIONS, no loaders, no NODE_PATH.
    env = {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      LOG_LEVEL: 'info',
      SIGNING_KEYS: signingKeys,
      BROKER_API_KEYS: apiKey,
      ALLOWED_ORIGINS: 'https://app.example.com',
      UPSTREAM_TOKEN_URL: auth.tokenUrl,
      UPSTREAM_CLIENT_ID: auth.clientId,
      UPSTREAM_CLIENT_SECRET: auth.clientSecret,
      UPSTREAM_RESOURCE: auth.resource,
      UPSTREAM_SCOPE: auth.scope,
    };
    // CMD ["node", "dist/main.js"]; with METRICS_PORT set, the metrics listener is the last to start.
    const child = spawn(process.execPath, ['dist/main.js'], {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    broker = child;
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const collect = (chunk: Buffer) => {
      logs += chunk.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const started = await Promise.race([
      new Promise<boolean>((resolve) => {
        child.stdout?.on('data', () => {
          if (logs.includes('"msg":"metrics listening"')) resolve(true);
        });
      }),
      exited.then(() => false),
    ]);
    expect(started, logs).toBe(true);
  }, 300_000);

  afterAll(async () => {
    if (broker && broker.exitCode === null) {
      broker.kill('SIGKILL');
      await exited;
    }
    // The broker's log lines join the run's secret-leak scan.
    if (logs)
      appendFileSync(join(inject('leakDir'), 'logs.ndjson'), logs.endsWith('\n') ? logs : `${logs}\n`);
    await auth?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('when the production install is done, then no dev-only package is in node_modules and every dependency is', () => {
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as LockFile;
    const devOnly = Object.entries(lock.packages).filter(([path, entry]) => path && entry.dev === true);
    expect(devOnly.length).toBeGreaterThan(50);
    expect(devOnly.map(([path]) => path).filter((path) => existsSync(join(dir, path)))).toEqual([]);
    const present = (name: string) => existsSync(join(dir, 'node_modules', name, 'package.json'));
    expect(Object.keys(packageJson.dependencies).filter((name) => !present(name))).toEqual([]);
    expect(
      ['oidc-provider', 'vitest', 'tsx', 'typescript', 'supertest', '@biomejs/biome'].filter(present),
    ).toEqual([]);
  });

  it('when the compiled code is read, then every package it imports statically is a production dependency', () => {
    const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
    const imported = new Map<string, string>();
    for (const file of jsFiles(join(dir, 'dist'))) {
      const source = readFileSync(file, 'utf8');
      const specifiers = [
        ...source.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm),
        ...source.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
        ...source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
      ].map((match) => match[1] ?? '');
      for (const specifier of specifiers) {
        if (specifier.startsWith('.') || builtins.has(specifier)) continue;
        imported.set(packageName(specifier), relative(dir, file));
      }
    }
    expect(imported.size).toBeGreaterThan(5);
    const notProduction = [...imported].filter(([name]) => !(name in packageJson.dependencies));
    expect(notProduction).toEqual([]);
  });

  it('when started with a production configuration, then it listens in production mode without the dev upstream', () => {
    const listening = logs
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.msg === 'token-broker listening');
    expect(listening).toMatchObject({ production: true, host: '127.0.0.1' });
    expect(logs).not.toMatch(/dev upstream|dev API key|unsupported runtime/i);
  });

  it('when probed, then /healthz is ok and /readyz is ready with an upstream token', async () => {
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', upstream: { token: 'held' } });
    expect(auth.tokenRequests()).toBe(1);
  });

  it('when a page loads the browser helper, then the image serves the built module and its declarations', async () => {
    const helper = await fetch(`${url}/client.js`);
    expect(helper.status).toBe(200);
    expect(helper.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await helper.text()).toMatch(/export\s*\{[^}]*\bcreateBrokerClient\b/);
    const types = await fetch(`${url}/client.d.ts`);
    expect(types.status).toBe(200);
    expect(await types.text()).toContain('export declare function createBrokerClient(');
  });

  it('when a backend claims a token, then it verifies against the published JWKS', async () => {
    const res = await fetch(`${url}/api/auth/claim`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ origin: 'https://app.example.com', ip: '203.0.113.7' }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; expiresIn: number };
    registerSecret('image claimed token', body.token);
    const { payload } = await jwtVerify(
      body.token,
      createRemoteJWKSet(new URL(`${url}/.well-known/jwks.json`)),
    );
    expect(payload).toMatchObject({ origin: 'https://app.example.com', ip: '203.0.113.7' });
  });

  it('when METRICS_PORT is set, then Prometheus scrapes that port and the traffic port has no /metrics', async () => {
    const scrape = await fetch(`${metricsUrl}/metrics`);
    expect(scrape.status).toBe(200);
    const text = await scrape.text();
    expect(text).toMatch(/^token_broker_client_tokens_total\{route="claim",outcome="issued"\} 1$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
  });

  it('when the CLI of the image checks the same environment, then it finds no problem', async () => {
    const check = await run(process.execPath, ['bin/token-broker.js', 'check-config'], dir, env);
    expect(check.code, check.output).toBe(0);
  });

  it('when packed for npm, then it holds dist, bin, public, the README and the licence, and every entry point it names', () => {
    const packedFiles = (cwd: string) => {
      const json = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
        cwd,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      return (JSON.parse(json) as { files: { path: string }[] }[])[0]?.files.map(({ path }) => path) ?? [];
    };
    const allowed = /^(dist|bin|public)\/|^(README\.md|LICENSE|package\.json)$/;
    const never = /(^|\/)(test|node_modules|secrets)\/|(^|\/)\.env|\.(pem|key)$|signing-keys/i;
    const fromRoot = packedFiles(root);
    expect(fromRoot.filter((path) => !allowed.test(path) || never.test(path))).toEqual([]);
    expect(fromRoot).toEqual(
      expect.arrayContaining(['README.md', 'LICENSE', 'package.json', 'bin/token-broker.js']),
    );

    // The replayed image holds a fresh build: every file package.json points at is in the package.
    cpSync(join(root, 'README.md'), join(dir, 'README.md'));
    cpSync(join(root, 'LICENSE'), join(dir, 'LICENSE'));
    const fromBuild = packedFiles(dir);
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
      exports: Record<string, Record<string, string>>;
    };
    const named = [...Object.values(manifest.bin), ...Object.values(manifest.exports).flatMap(Object.values)];
    const entry = /from '\.\.\/(dist\/[^']+)'|import '\.\.\/(dist\/[^']+)'/.exec(
      readFileSync(join(root, 'bin', 'token-broker.js'), 'utf8'),
    );
    named.push(entry?.[1] ?? entry?.[2] ?? 'bin/token-broker.js imports nothing from dist/');
    expect(
      named.map((path) => path.replace(/^\.\//, '')).filter((path) => !fromBuild.includes(path)),
    ).toEqual([]);
    expect(fromBuild.filter((path) => !allowed.test(path) || never.test(path))).toEqual([]);
  });

  it('when sent SIGTERM, then it drains and exits 0', async () => {
    broker?.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(logs).toContain('"msg":"stopped"');
  });
});
