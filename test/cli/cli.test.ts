import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { calculateJwkThumbprint, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';

const cliPath = fileURLToPath(new URL('../../src/cli/index.ts', import.meta.url));
// Resolved here rather than as "--import tsx", which would resolve from the child's (temporary) cwd.
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  env?: Record<string, string>;
  cwd?: string;
  stdin?: string;
}

/**
 * Runs a command line through `runCli`, in this process, with only the given environment (plus PATH).
 * The entry point adds nothing but the process's argv, streams and exit status; the one test under
 * "token-broker entry point" runs it for real.
 */
async function cli(args: string[], options: CliOptions = {}): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    args,
    {
      env: { PATH: process.env.PATH ?? '', ...options.env },
      cwd: options.cwd ?? tmpdir(),
      stdout: (chunk) => {
        stdout += chunk;
      },
      stderr: (chunk) => {
        stderr += chunk;
      },
      readStdin: async () => options.stdin ?? '',
      secrets: new Set(),
    },
    version,
  );
  return { code, stdout, stderr };
}

/** Runs the real entry point in a child process with only the given environment (plus PATH). */
function spawnCli(args: string[], options: CliOptions = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsxLoader, cliPath, ...args], {
      cwd: options.cwd ?? tmpdir(),
      env: { PATH: process.env.PATH ?? '', ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'token-broker-cli-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

async function generate(alg: string): Promise<{ keys: JWK[] }> {
  const result = await cli(['keys', 'generate', '--alg', alg]);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as { keys: JWK[] };
}

async function signAndVerify(privateJwk: JWK, verifyJwk: JWK): Promise<void> {
  const alg = privateJwk.alg as string;
  const jwt = await new SignJWT({ origin: 'https://app.example.com' })
    .setProtectedHeader({ alg, kid: privateJwk.kid as string })
    .setIssuer('urn:token-broker')
    .setExpirationTime('5m')
    .sign(await importJWK(privateJwk, alg));
  const { payload, protectedHeader } = await jwtVerify(jwt, await importJWK(verifyJwk, alg), {
    issuer: 'urn:token-broker',
  });
  expect(payload.origin).toBe('https://app.example.com');
  expect(protectedHeader.kid).toBe(privateJwk.kid);
}

describe('token-broker entry point', () => {
  it('when the real entry point runs, then argv, cwd, stdin, stdout, stderr and the exit status reach the process', async () => {
    const dir = tempDir();
    const { keys } = await generate('EdDSA');
    const hs = await generate('HS256');
    writeFileSync(join(dir, 'signing-keys.json'), JSON.stringify({ keys: [...keys, ...hs.keys] }));
    const [published, missing, printed] = await Promise.all([
      spawnCli(['keys', 'public', '-'], { stdin: readFileSync(join(dir, 'signing-keys.json'), 'utf8') }),
      spawnCli(['keys', 'rotate', 'nope.json'], { cwd: dir }),
      spawnCli(['--version']),
    ]);
    expect(published.code).toBe(0);
    expect(published.stderr).toContain('left out 1 HS256 (oct) key');
    expect((JSON.parse(published.stdout) as { keys: JWK[] }).keys.map((key) => key.kid)).toEqual([
      keys[0]?.kid,
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read nope.json (ENOENT)');
    expect(printed).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });
});

describe('token-broker help', () => {
  it('when run with --help, then it lists every command and exits 0', async () => {
    const result = await cli(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['keys generate', 'keys rotate', 'keys public', 'check-config', 'claim']) {
      expect(result.stdout).toContain(command);
    }
  });

  it('when a command is given --help, then its own options are shown', async () => {
    const rotate = await cli(['keys', 'rotate', '--help']);
    expect(rotate.code).toBe(0);
    expect(rotate.stdout).toContain('--keep');
    const claim = await cli(['help', 'claim']);
    expect(claim.stdout).toContain('--api-key-file');
    const check = await cli(['check-config', '-h']);
    expect(check.stdout).toContain('--dotenv');
  });

  it('when the command is unknown or missing, then one line goes to stderr and the exit status is 2', async () => {
    const unknown = await cli(['rotate-keys']);
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toContain('unknown command');
    const missing = await cli([]);
    expect(missing.code).toBe(2);
    const badAlg = await cli(['keys', 'generate', '--alg', 'RS256']);
    expect(badAlg.code).toBe(2);
    expect(badAlg.stderr).toContain('--alg must be EdDSA, ES256 or HS256');
  });
});

describe('token-broker keys', () => {
  it.each(['EdDSA', 'ES256', 'HS256'])(
    'when generating an %s key, then the set signs and verifies a JWT',
    async (alg) => {
      const { keys } = await generate(alg);
      expect(keys).toHaveLength(1);
      const [key] = keys as [JWK];
      expect(key.alg).toBe(alg);
      expect(key.use).toBe('sig');
      expect(typeof (alg === 'HS256' ? key.k : key.d)).toBe('string');
      if (alg === 'HS256') {
        expect(key.kid).toMatch(/^[\w-]{22}$/);
        await signAndVerify(key, key);
      } else {
        expect(key.kid).toBe(await calculateJwkThumbprint(key, 'sha256'));
        const { d: _private, ...publicJwk } = key;
        await signAndVerify(key, publicJwk);
      }
    },
  );

  it('when --kid is given, then the key carries it', async () => {
    const result = await cli(['keys', 'generate', '--kid', '2025-01']);
    expect((JSON.parse(result.stdout) as { keys: JWK[] }).keys[0]?.kid).toBe('2025-01');
  });

  it('when rotating, then the new key comes first, older keys follow, at most --keep remain and the mode is kept', async () => {
    const dir = tempDir();
    const file = join(dir, 'signing-keys.json');
    const original = await generate('ES256');
    writeFileSync(file, JSON.stringify(original));
    chmodSync(file, 0o640);
    const kids = [original.keys[0]?.kid];

    for (let round = 0; round < 3; round += 1) {
      const result = await cli(['keys', 'rotate', 'signing-keys.json', '--keep', '3'], { cwd: dir });
      expect(result.code).toBe(0);
      kids.unshift(result.stdout.trim());
    }
    const { keys } = JSON.parse(readFileSync(file, 'utf8')) as { keys: JWK[] };
    expect(keys.map((key) => key.kid)).toEqual(kids.slice(0, 3));
    expect(keys.every((key) => key.alg === 'ES256' && typeof key.d === 'string')).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['signing-keys.json']);
    const { d: _private, ...publicJwk } = keys[0] as JWK;
    await signAndVerify(keys[0] as JWK, publicJwk);
  });

  it('when rotating a symlinked file with --alg, then the target is updated and the link stays', async () => {
    const dir = tempDir();
    const target = join(dir, 'keys-v1.json');
    writeFileSync(target, JSON.stringify(await generate('EdDSA')));
    symlinkSync(target, join(dir, 'current.json'));
    const result = await cli(['keys', 'rotate', 'current.json', '--alg', 'HS256'], { cwd: dir });
    expect(result.code).toBe(0);
    const { keys } = JSON.parse(readFileSync(target, 'utf8')) as { keys: JWK[] };
    expect(keys.map((key) => key.alg)).toEqual(['HS256', 'EdDSA']);
    expect(readdirSync(dir).sort()).toEqual(['current.json', 'keys-v1.json']);
  });

  it('when the file to rotate is missing or not a JWK Set, then it fails with exit status 1', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.json'), '{"kty":"OKP"}');
    const missing = await cli(['keys', 'rotate', 'nope.json'], { cwd: dir });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read nope.json (ENOENT)');
    const bad = await cli(['keys', 'rotate', 'bad.json'], { cwd: dir });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('not a JWK Set');
  });

  it('when printing public keys, then private parts are gone, oct keys are left out with a note, and JWTs verify', async () => {
    const ed = await generate('EdDSA');
    const es = await generate('ES256');
    const hs = await generate('HS256');
    const set = { keys: [...ed.keys, ...hs.keys, ...es.keys] };
    const result = await cli(['keys', 'public', '-'], { stdin: JSON.stringify(set) });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('left out 1 HS256 (oct) key');
    const { keys } = JSON.parse(result.stdout) as { keys: JWK[] };
    expect(keys.map((key) => key.kid)).toEqual([ed.keys[0]?.kid, es.keys[0]?.kid]);
    expect(keys.some((key) => 'd' in key || 'k' in key)).toBe(false);
    expect(result.stdout).not.toContain(hs.keys[0]?.k as string);
    await signAndVerify(ed.keys[0] as JWK, keys[0] as JWK);
    await signAndVerify(es.keys[0] as JWK, keys[1] as JWK);
  });
});

describe('token-broker check-config', () => {
  const clientSecret = registerSecret('cli upstream client secret', 'cli-upstream-secret-Zq8vW2pL9xR4');
  const apiKey = registerSecret('cli broker api key', 'cli-broker-api-key-Hn3Kd7Ys0Tb6Qe1');

  it('when the environment (with a .env and *_FILE secrets) is good, then it prints OK and a summary without secrets', async () => {
    const dir = tempDir();
    const signingKeys = await generate('EdDSA');
    const privatePart = registerSecret('cli signing key d', signingKeys.keys[0]?.d as string);
    const cacheKey = registerSecret('cli cache encryption key', randomBytes(32).toString('base64'));
    writeFileSync(join(dir, 'signing-keys.json'), JSON.stringify(signingKeys));
    writeFileSync(join(dir, 'client-secret'), `${clientSecret}\n`);
    writeFileSync(
      join(dir, '.env'),
      [
        `UPSTREAM_CLIENT_SECRET_FILE=${join(dir, 'client-secret')}`,
        'UPSTREAM_PROFILE=json',
        'ALLOWED_ORIGINS=https://app.example.com,https://*.example.org',
        'REDIS_URL=redis://:redis-password-in-url@127.0.0.1:6379',
        `CACHE_ENCRYPTION_KEY=${cacheKey}`,
      ].join('\n'),
    );
    const result = await cli(['check-config'], {
      cwd: dir,
      env: {
        NODE_ENV: 'production',
        UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
        UPSTREAM_CLIENT_ID: 'broker-client',
        SIGNING_KEYS_FILE: join(dir, 'signing-keys.json'),
        BROKER_API_KEYS: apiKey,
      },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^configuration OK\n/);
    expect(result.stdout).toContain('https://auth.example.com/oauth/token');
    expect(result.stdout).toMatch(/profile:\s+json/);
    expect(result.stdout).toMatch(
      /auth method:\s+client_id and client_secret in the JSON body \(json profile\)/,
    );
    expect(result.stdout).toContain('https://app.example.com, https://*.example.org');
    expect(result.stdout).toMatch(/signing keys:\s+1 /);
    expect(result.stdout).toMatch(/api keys:\s+1/);
    expect(result.stdout).toMatch(/redis:\s+one server at 127\.0\.0\.1:6379/);
    for (const secret of [clientSecret, apiKey, privatePart, cacheKey, 'redis-password-in-url']) {
      expect(result.stdout).not.toContain(secret);
    }
  });

  it('when several variables are bad, then every one is named, the exit status is 1 and no secret is printed', async () => {
    const shortKey = 'short-key-x1';
    const result = await cli(['check-config'], {
      env: {
        NODE_ENV: 'production',
        PORT: 'eighty',
        ALLOWED_ORIGINS: 'app.example.com',
        UPSTREAM_TOKEN_URL: 'ftp://auth.example.com/token',
        UPSTREAM_CLIENT_SECRET: clientSecret,
        BROKER_API_KEYS: `${apiKey},${shortKey}`,
        SIGNING_KEYS: `{"keys":[{"kty":"oct","k":"${clientSecret}"`,
        CLIENT_TOKEN_BIND_IP: 'sometimes',
      },
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    for (const name of [
      'PORT',
      'ALLOWED_ORIGINS',
      'UPSTREAM_TOKEN_URL',
      'BROKER_API_KEYS',
      'SIGNING_KEYS',
      'CLIENT_TOKEN_BIND_IP',
    ]) {
      expect(result.stderr).toMatch(new RegExp(`^  - ${name}: `, 'm'));
    }
    for (const secret of [clientSecret, apiKey, shortKey]) {
      expect(result.stderr).not.toContain(secret);
    }
  });

  it('when the signing keys parse but cannot sign, then each bad key is reported', async () => {
    const publicOnly = {
      keys: [{ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' }],
    };
    const result = await cli(['check-config'], { env: { SIGNING_KEYS: JSON.stringify(publicOnly) } });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('SIGNING_KEYS: key 1 has no private part');
  });

  it('when --dotenv names a missing file, then it fails with exit status 1', async () => {
    const result = await cli(['check-config', '--dotenv', 'missing.env'], { cwd: tempDir() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot read missing.env');
  });
});

describe('token-broker claim', () => {
  const apiKey = registerSecret('cli claim api key', 'claim-api-key-Vb5Nq2Xs8Lm4Rt7Pw3Jc9Zd');
  const token = registerSecret('cli claim client token', 'eyJhbGciOiJFZERTQSJ9.claim-test-token.signature');
  const seen: { url: string; headers: IncomingHttpHeaders; body: unknown }[] = [];
  let server: Server;
  let base: string;

  beforeAll(async () => {
    // Imitates POST /api/auth/claim: Bearer API key, JSON {origin, ip}, problem+json on errors.
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => {
        raw += chunk.toString('utf8');
      });
      req.on('end', () => {
        const body = JSON.parse(raw || '{}') as { origin?: string; ip?: string };
        seen.push({ url: req.url ?? '', headers: req.headers, body });
        const problem = (status: number, code: string, detail: string) => {
          res.writeHead(status, { 'content-type': 'application/problem+json' });
          res.end(JSON.stringify({ type: 'about:blank', title: code, status, code, detail }));
        };
        if (req.method !== 'POST' || !req.url?.endsWith('/api/auth/claim'))
          return problem(404, 'not_found', 'No such route');
        if (req.headers.authorization !== `Bearer ${apiKey}`) {
          return problem(401, 'invalid_api_key', 'Missing or unknown broker API key');
        }
        if (body.origin === 'https://evil.example') {
          return problem(403, 'origin_not_allowed', 'This origin may not obtain client tokens');
        }
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(
          JSON.stringify({
            token,
            expiration: '01-02-2030 03:04',
            expiresIn: 900,
            expiresAt: '2030-01-02T03:04:00.000Z',
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('when given --api-key-file, then it posts {origin, ip} with a Bearer key and prints the answer', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'api-key'), `${apiKey}\n`);
    seen.length = 0;
    const result = await cli(
      [
        'claim',
        '--url',
        base,
        '--origin',
        'https://app.example.com',
        '--ip',
        '203.0.113.7',
        '--api-key-file',
        'api-key',
      ],
      { cwd: dir },
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      token,
      expiration: '01-02-2030 03:04',
      expiresIn: 900,
      expiresAt: '2030-01-02T03:04:00.000Z',
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toBe('/api/auth/claim');
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${apiKey}`);
    expect(seen[0]?.headers['content-type']).toBe('application/json');
    expect(seen[0]?.body).toEqual({ origin: 'https://app.example.com', ip: '203.0.113.7' });
  });

  it('when the key comes from BROKER_API_KEY and the URL has a path prefix, then the route is under that prefix', async () => {
    seen.length = 0;
    const result = await cli(['claim', '--url', `${base}/broker`, '--origin', 'https://app.example.com'], {
      env: { BROKER_API_KEY: apiKey },
    });
    expect(result.code).toBe(0);
    expect(seen[0]?.url).toBe('/broker/api/auth/claim');
    expect(seen[0]?.body).toEqual({ origin: 'https://app.example.com' });
  });

  it('when the broker answers problem+json, then "code: detail" goes to stderr, exit 1, and the key is not echoed', async () => {
    const refused = await cli([
      'claim',
      '--url',
      base,
      '--origin',
      'https://evil.example',
      '--api-key',
      apiKey,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain('origin_not_allowed: This origin may not obtain client tokens');
    expect(refused.stderr).not.toContain(apiKey);

    const wrongKey = 'wrong-api-key-Pp0Oo9Ii8Uu7';
    const unknown = await cli([
      'claim',
      '--url',
      base,
      '--origin',
      'https://app.example.com',
      `--api-key=${wrongKey}`,
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('invalid_api_key: Missing or unknown broker API key');
    expect(unknown.stderr).not.toContain(wrongKey);
  });

  it('when the command line is wrong, then the exit status is 2 and the API key appears nowhere in the output', async () => {
    const stray = await cli([
      'claim',
      '--url',
      base,
      '--origin',
      'https://app.example.com',
      '--api-key',
      apiKey,
      apiKey,
    ]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('unexpected argument');
    const badUrl = await cli([
      'claim',
      '--url',
      apiKey,
      '--origin',
      'https://app.example.com',
      `--api-key=${apiKey}`,
    ]);
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain('--url must be an http(s) URL');
    const noOrigin = await cli(['claim', '--url', base, '--api-key', apiKey, '--bogus']);
    expect(noOrigin.code).toBe(2);
    for (const result of [stray, badUrl, noOrigin]) {
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(`${result.stdout}${result.stderr}`).not.toContain(apiKey);
    }
  });

  it('when nothing listens at the URL, then it says so with exit status 1', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await cli(
      ['claim', '--url', `http://127.0.0.1:${port}`, '--origin', 'https://app.example.com'],
      {
        env: { BROKER_API_KEY: apiKey },
      },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot reach the broker at http://127.0.0.1:${port} (ECONNREFUSED)`);
  });
});

describe('token-broker claim --upstreams', () => {
  it('when given --upstreams against a broker with named upstreams, then the token it prints opens only those', async () => {
    const upstream = (name: string) => ({
      [`UPSTREAM_${name}_TOKEN_URL`]: 'https://auth.example.com/token',
      [`UPSTREAM_${name}_CLIENT_ID`]: 'broker',
      [`UPSTREAM_${name}_CLIENT_SECRET`]: 'claim-upstreams-test-secret',
    });
    const broker = await startBroker({
      upstream: 'fake',
      env: {
        UPSTREAMS: 'alpha,beta',
        UPSTREAM_TOKEN_URL: '',
        UPSTREAM_CLIENT_ID: '',
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_DEFAULT_TTL: '',
        UPSTREAM_TIMEOUT_MS: '',
        ...upstream('ALPHA'),
        ...upstream('BETA'),
      },
    });
    const claim = (names: string) =>
      cli(['claim', '--url', broker.url, '--origin', appOrigin, '--upstreams', names], {
        env: { BROKER_API_KEY: broker.apiKey },
      });
    const result = await claim('beta');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const { token } = JSON.parse(result.stdout) as { token: string };
    registerSecret('cli claim --upstreams token', token);
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    expect(claims.upstreams).toEqual(['beta']);

    const unknown = await claim('gamma');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('invalid_request: upstreams: "gamma" is not configured');
  });
});
