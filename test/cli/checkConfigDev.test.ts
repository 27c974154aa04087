import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { checkConfigCommand } from '../../src/cli/checkConfig.js';
import { certificateThumbprint } from '../../src/upstream/tlsClientIdentity.js';
import { createTestAuthority } from '../support/certificates.js';
import { freePort } from '../support/freePort.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer } from '../support/oidcProvider.js';
import { missing } from '../support/requires.js';

const emptyDir = mkdtempSync(join(tmpdir(), 'token-broker-check-'));
afterAll(() => rmSync(emptyDir, { recursive: true, force: true }));

async function checkConfig(env: Record<string, string>, args: string[] = []) {
  let stdout = '';
  let stderr = '';
  const code = await checkConfigCommand.run(args, {
    env,
    cwd: emptyDir,
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    readStdin: async () => '',
    secrets: new Set(),
  });
  return { code, stdout, stderr };
}

describe('token-broker check-config in development', () => {
  it('when ALLOWED_ORIGINS is empty, then it reports the origins the dev upstream allows, without a warning', async () => {
    const result = await checkConfig({ PORT: '8181' });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /allowed origins:\s+http:\/\/localhost:8181, http:\/\/127\.0\.0\.1:8181 \(development default/,
    );
    expect(result.stdout).not.toContain('warning:');
  });

  it('when ALLOWED_ORIGINS leaves the demo page out, then it says so', async () => {
    const result = await checkConfig({ ALLOWED_ORIGINS: 'https://app.example.com' });
    expect(result.stdout).toMatch(/allowed origins:\s+https:\/\/app\.example\.com\n/);
    expect(result.stdout).toContain('warning: ALLOWED_ORIGINS replaces the development default');
  });

  it('when production has no allowed origin and no API URL, then both warnings are printed', async () => {
    const result = await checkConfig({
      NODE_ENV: 'production',
      SIGNING_KEYS: JSON.stringify({
        keys: [
          {
            kty: 'oct',
            k: 'AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow',
            alg: 'HS256',
            kid: 'k',
          },
        ],
      }),
      UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_CLIENT_SECRET: 'check-config-dev-test-secret',
    });
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('allowed origins: none');
    expect(result.stdout).toContain('warning: UPSTREAM_API_URL is not set');
    expect(result.stdout).toContain('warning: ALLOWED_ORIGINS is empty');
  });
});

describe('token-broker check-config summary', () => {
  const upstream = {
    UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
    UPSTREAM_CLIENT_ID: 'broker',
    UPSTREAM_CLIENT_SECRET: 'summary-upstream-secret-value',
  };
  const authMethod = async (env: Record<string, string>) =>
    /auth method:\s+(.*)\n/.exec((await checkConfig({ ...upstream, ...env })).stdout)?.[1];

  it('when the profile sends the secret in its body, then the auth method says so rather than client_secret_basic', async () => {
    expect(await authMethod({})).toBe('client_secret_basic');
    expect(await authMethod({ UPSTREAM_AUTH_METHOD: 'client_secret_post' })).toBe('client_secret_post');
    expect(await authMethod({ UPSTREAM_PROFILE: 'json' })).toBe(
      'client_id and client_secret in the JSON body (json profile)',
    );
    expect(await authMethod({ UPSTREAM_PROFILE: 'bloq' })).toBe(
      'clientId and clientSecret in the JSON body (bloq profile)',
    );
  });

  it('when the broker authenticates with a platform JWT or a certificate, then the auth method says no secret is sent, and which certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tb-summary-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const jwt = `${part({ alg: 'ES256' })}.${part({ iss: 'https://k8s.test', sub: 'sa:broker', exp: 4102444800 })}.c2ln`;
    writeFileSync(join(dir, 'token'), jwt);
    const noSecret = { UPSTREAM_CLIENT_SECRET: '' };
    expect(
      await authMethod({
        ...noSecret,
        UPSTREAM_AUTH_METHOD: 'client_assertion_file',
        UPSTREAM_CLIENT_ASSERTION_FILE: join(dir, 'token'),
        UPSTREAM_PROFILE: 'json',
      }),
    ).toBe('client_assertion_file (a JWT the platform issued, read from its file; no secret is sent)');
    if (await missing('openssl')) return;
    const pki = await createTestAuthority();
    onTestFinished(() => pki.remove());
    const issued = await pki.issue('broker', { subject: '/CN=broker' });
    expect(
      await authMethod({
        ...noSecret,
        UPSTREAM_AUTH_METHOD: 'tls_client_auth',
        UPSTREAM_TLS_CERT_FILE: issued.certPath,
        UPSTREAM_TLS_KEY_FILE: issued.keyPath,
      }),
    ).toBe(
      `tls_client_auth (client certificate x5t#S256 ${certificateThumbprint(new X509Certificate(issued.cert))}; no secret is sent)`,
    );
  });
});

describe('token-broker check-config with shared defaults', () => {
  it('when named upstreams take shared defaults, then each shows its effective settings and the variables they came from', async () => {
    const secret = 'shared-defaults-summary-secret';
    const result = await checkConfig({
      UPSTREAMS: 'uitpas,entry',
      UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_CLIENT_SECRET: secret,
      UPSTREAM_PROFILE: 'json',
      UPSTREAM_TIMEOUT_MS: '9000',
      UPSTREAM_UITPAS_API_URL: 'https://uitpas.example.com',
      UPSTREAM_ENTRY_API_URL: 'https://entry.example.com',
      UPSTREAM_ENTRY_CLIENT_ID: 'entry-client',
      UPSTREAM_ENTRY_SCOPE: 'events',
      UPSTREAM_ENTRY_TIMEOUT_MS: '2000',
    });
    expect(result.stderr).toBe('');
    const row = (label: string) => new RegExp(`\\n  ${label}:\\s+(.*)\\n`).exec(result.stdout)?.[1];
    expect(row('uitpas client id')).toBe('broker');
    expect(row('entry client id')).toBe('entry-client');
    expect(row('entry scope')).toBe('events');
    expect(row('uitpas timeouts')).toMatch(/^9000 ms per upstream request, 300000 ms per API call/);
    expect(row('entry timeouts')).toMatch(/^2000 ms per upstream request/);
    expect(row('uitpas shared')).toBe(
      'from UPSTREAM_TOKEN_URL, UPSTREAM_CLIENT_ID, UPSTREAM_CLIENT_SECRET, UPSTREAM_PROFILE, UPSTREAM_TIMEOUT_MS',
    );
    expect(row('entry shared')).toBe('from UPSTREAM_TOKEN_URL, UPSTREAM_CLIENT_SECRET, UPSTREAM_PROFILE');
    expect(result.stdout).not.toContain(secret);
  });
});

describe('token-broker check-config --probe', async () => {
  const noRedis = await missing('redis');
  const cacheKey = registerSecret('probe cache key', randomBytes(32).toString('base64'));

  it.skipIf(noRedis)(
    'when the settings are right, then it gets a real token from the upstream and a PONG from Redis, and exits 0',
    async () => {
      const auth = await startTestAuthServer();
      onTestFinished(() => auth.close());
      const result = await checkConfig(
        {
          UPSTREAM_TOKEN_URL: auth.tokenUrl,
          UPSTREAM_CLIENT_ID: auth.clientId,
          UPSTREAM_CLIENT_SECRET: auth.clientSecret,
          UPSTREAM_RESOURCE: auth.resource,
          UPSTREAM_SCOPE: auth.scope,
          REDIS_URL: 'redis://127.0.0.1:6379',
          CACHE_ENCRYPTION_KEY: cacheKey,
        },
        ['--probe'],
      );
      expect(result.stdout).toContain(
        `probe: upstream default: token obtained from ${new URL(auth.tokenUrl).origin}${new URL(auth.tokenUrl).pathname}, valid `,
      );
      expect(result.stdout).toContain('probe: redis (one server at 127.0.0.1:6379): PONG');
      expect(result.code).toBe(0);
      expect(await auth.tokenRequests()).toBe(1);
    },
  );

  it('when the secret is wrong and nothing listens at REDIS_URL, then each failure is one line with its cause, and it exits 1', async () => {
    const auth = await startTestAuthServer();
    onTestFinished(() => auth.close());
    const wrong = registerSecret('probe wrong secret', 'probe-wrong-client-secret-9Kd2Lq');
    const port = await freePort();
    const result = await checkConfig(
      {
        UPSTREAM_TOKEN_URL: auth.tokenUrl,
        UPSTREAM_CLIENT_ID: auth.clientId,
        UPSTREAM_CLIENT_SECRET: wrong,
        UPSTREAM_RESOURCE: auth.resource,
        REDIS_URL: `redis://127.0.0.1:${port}`,
        CACHE_ENCRYPTION_KEY: cacheKey,
      },
      ['--probe'],
    );
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/probe: upstream default: no token: invalid_client \(HTTP 401\)/);
    expect(result.stdout).toMatch(
      new RegExp(`probe: redis \\(one server at 127\\.0\\.0\\.1:${port}\\): unreachable: .*ECONNREFUSED`),
    );
    expect(result.stdout + result.stderr).not.toContain(wrong);
  });
});
