import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { loadConfig, type UpstreamConfig } from '../../src/config/index.js';
import { configWarnings, probeUpstream } from '../../src/config/startupChecks.js';
import { startBrokerProcess } from '../support/brokerProcess.js';
import { freePort } from '../support/freePort.js';
import { registerSecret } from '../support/logs.js';

const secret = registerSecret('startup checks upstream secret', 'startup-checks-secret-Lq3Zr8Wn');
const upstream = {
  UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
  UPSTREAM_CLIENT_ID: 'broker',
  UPSTREAM_CLIENT_SECRET: secret,
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
      NODE_ENV: 'production',
      SIGNING_KEYS: JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x', d: 'd' }] }),
      UPSTREAM_API_URL: 'https://api.example.com',
      ALLOWED_ORIGINS: 'https://app.example.com',
    };
    expect(codes(env)).toEqual(['metrics_refused']);
    expect(codes({ ...env, METRICS_PORT: '9464' })).toEqual([]);
    expect(codes({ ...env, BROKER_API_KEYS: 'k'.repeat(32) })).toEqual([]);
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
