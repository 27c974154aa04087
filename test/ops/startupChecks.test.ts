import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { loadConfig, type UpstreamConfig } from '../../src/config/index.js';
import { configWarnings, probeUpstream } from '../../src/config/startupChecks.js';
import { startBrokerProcess } from '../support/brokerProcess.js';
import { freePort } from '../support/freePort.js';
import { registerSecret } from '../support/logs.js';

const secret = registerSecret('startup checks upstream secret', 'startup-checks-secret-Lq3Zr8Wn');
const apiKey = registerSecret('startup checks api key', 'startup-checks-api-key-5bQx7vRm2kLp9wTz');
const upstream = {
  UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
  UPSTREAM_CLIENT_ID: 'broker',
  UPSTREAM_CLIENT_SECRET: secret,
  BROKER_API_KEYS: apiKey,
};
const codes = (env: Record<string, string>, devUpstream = false) =>
  configWarnings(loadConfig(env), { devUpstream }).map((warning) => warning.code);

describe('configWarnings', () => {
  it('when everything a page needs is set, then there is nothing to say', () => {
    expect(
      codes({
        ...upstream,
        UPSTREAM_API_URL: 'https://api.example.com',
        ALLOWED_ORIGINS: 'https://app.example.com',
      }),
    ).toEqual([]);
  });

  it('when UPSTREAM_API_URL and ALLOWED_ORIGINS are missing, then each gets its warning', () => {
    expect(codes(upstream)).toEqual(['proxy_disabled', 'no_allowed_origins']);
  });

  it('when the dev upstream runs and ALLOWED_ORIGINS leaves out its own origin, then the demo page is said to be refused', () => {
    const env = { ...upstream, UPSTREAM_API_URL: 'https://api.example.com', PORT: '8181' };
    expect(codes({ ...env, ALLOWED_ORIGINS: 'https://app.example.com' }, true)).toEqual([
      'dev_origin_replaced',
    ]);
    expect(codes({ ...env, ALLOWED_ORIGINS: 'https://app.example.com,http://localhost:8181' }, true)).toEqual(
      [],
    );
    expect(codes({ ...env, ALLOWED_ORIGINS: 'https://app.example.com' }, false)).toEqual([]);
  });

  it('when production serves /metrics on PORT and no API key is set, then it warns that every scrape is refused', () => {
    const env = {
      ...upstream,
      BROKER_API_KEYS: '',
      NODE_ENV: 'production',
      SIGNING_KEYS: JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x', d: 'd' }] }),
      UPSTREAM_API_URL: 'https://api.example.com',
      ALLOWED_ORIGINS: 'https://app.example.com',
    };
    expect(codes(env)).toEqual(['metrics_refused']);
    expect(codes({ ...env, METRICS_PORT: '9464', BROKER_API_KEYS: apiKey })).toEqual([]);
    expect(codes({ ...env, BROKER_API_KEYS: 'k'.repeat(32) })).toEqual([]);
  });

  it('when a real upstream is set and BROKER_API_KEYS is empty, then it warns that the backend routes refuse every caller', () => {
    const env = {
      ...upstream,
      UPSTREAM_API_URL: 'https://api.example.com',
      ALLOWED_ORIGINS: 'https://app.example.com',
    };
    expect(codes({ ...env, BROKER_API_KEYS: '' })).toEqual(['no_api_keys']);
    // The dev upstream prints a dev key of its own.
    expect(codes({ ...env, BROKER_API_KEYS: '' }, true)).not.toContain('no_api_keys');
  });

  it('when production sends a secret, a token or a page over plain http to another machine, then each is named', () => {
    const env = {
      ...upstream,
      NODE_ENV: 'production',
      METRICS_PORT: '9464',
      SIGNING_KEYS: JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x', d: 'd' }] }),
      UPSTREAM_TOKEN_URL: 'http://auth.example.com/oauth/token',
      UPSTREAM_API_URL: 'http://api.example.com',
      ALLOWED_ORIGINS: 'http://app.example.com,http://localhost:3000,https://secure.example.com',
    };
    const warnings = configWarnings(loadConfig(env), { devUpstream: false });
    expect(warnings.map(({ message }) => message)).toEqual([
      'the token endpoint is plain http (http://auth.example.com): the client secret crosses the network in clear; use https',
      'the API is plain http (http://api.example.com): the upstream access token crosses the network in clear; use https',
      'ALLOWED_ORIGINS lists http://app.example.com: its pages and their client tokens travel in clear; use https',
    ]);
    // Loopback never leaves the machine, and outside production plain http is the normal case.
    expect(
      codes({
        ...env,
        UPSTREAM_TOKEN_URL: 'http://127.0.0.1:9000/token',
        UPSTREAM_API_URL: 'http://[::1]:9001',
        ALLOWED_ORIGINS: 'https://app.example.com',
      }),
    ).toEqual([]);
    expect(codes({ ...env, NODE_ENV: 'development' })).toEqual([]);
  });

  it('when no upstream is configured yet (check-config in development), then the dev defaults count', () => {
    expect(codes({}, true)).toEqual([]);
    expect(codes({ ALLOWED_ORIGINS: 'https://app.example.com' }, true)).toEqual(['dev_origin_replaced']);
  });
});

describe('probeUpstream', () => {
  it('when something listens at the token URL, then it is reachable; when nothing does, then the reason names it', async () => {
    const server = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const config = (url: string) =>
      loadConfig({ ...upstream, UPSTREAM_TOKEN_URL: url }).upstreams[0]?.config as UpstreamConfig;
    try {
      expect(await probeUpstream(config(`http://127.0.0.1:${port}/token`), { timeoutMs: 1_000 })).toEqual({
        reachable: true,
      });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(await probeUpstream(config(`http://127.0.0.1:${port}/token`), { timeoutMs: 1_000 })).toEqual({
      reachable: false,
      reason: `cannot connect to http://127.0.0.1:${port} (ECONNREFUSED)`,
    });
  });
});

describe('start-up of the real process', () => {
  it('when the proxy is off, no origin is allowed and the token endpoint is closed, then it warns once for each and starts', async () => {
    const closed = await freePort();
    const broker = await startBrokerProcess({
      ...upstream,
      UPSTREAM_TOKEN_URL: `http://127.0.0.1:${closed}/token`,
      LOG_LEVEL: 'info',
    });
    try {
      await broker.waitForLine((line) => line.msg === 'token-broker listening');
      const checks = broker
        .lines()
        .filter((line) => line.check !== undefined)
        .map((line) => [line.check, line.level]);
      expect(checks).toEqual([
        ['proxy_disabled', 'warn'],
        ['no_allowed_origins', 'warn'],
        ['upstream_unreachable', 'warn'],
      ]);
      const ready = await fetch(`${broker.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { upstream: { unreachableAtStart?: string } }).upstream).toMatchObject({
        unreachableAtStart: `cannot connect to http://127.0.0.1:${closed} (ECONNREFUSED)`,
      });
    } finally {
      await broker.stop();
    }
  });
});
