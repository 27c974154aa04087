import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';

/** Issue #12, hardening: forwarded headers, API fingerprints, Origin/Referer size, CORS scope, proxy logs. */

const origin = 'https://app.example.com';
let api: ApiServer;
/** The broker of the tests that need no setting of their own. */
let shared: FakeUpstreamBroker;

/** A broker in front of the echo API; started inside a test, it closes when the test ends. */
const start = (env: Record<string, string> = {}) =>
  startBroker({ upstream: 'fake', env: { UPSTREAM_API_URL: `${api.origin}/`, ...env } });

beforeAll(async () => {
  api = await startEchoApi({ server: 'nginx/1.2.3', 'x-powered-by': 'PHP/5.4.0', 'x-api': 'kept' });
  shared = await start();
});
afterAll(async () => {
  await shared?.close();
  await api?.close();
});

async function mint(broker: FakeUpstreamBroker, headers: Record<string, string> = {}): Promise<string> {
  const minted = await broker.request({ path: '/api/client-token', headers: { origin, ...headers } });
  expect(minted.status).toBe(200);
  return registerSecret('edge client token', (JSON.parse(minted.body) as { token: string }).token);
}

const spoofed = {
  'x-forwarded-for': '192.0.2.66, 198.51.100.7',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-proto': 'gopher',
  'x-real-ip': '192.0.2.99',
};

describe('forwarded headers towards the API', () => {
  it('when TRUST_PROXY is off, then the client-written X-Forwarded-* and X-Real-IP are replaced by what the broker saw', async () => {
    const broker = await start();
    const token = await mint(broker);
    const answer = await broker.request({
      path: '/api/proxy/who',
      headers: { origin, authorization: `Bearer ${token}`, ...spoofed },
    });
    expect(answer.status).toBe(200);
    const seen = (JSON.parse(answer.body) as { headers: Record<string, string> }).headers;
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe(new URL(broker.url).host);
    expect(seen).not.toHaveProperty('x-real-ip');
  });

  it('when TRUST_PROXY trusts loopback, then X-Forwarded-For is rebuilt from the trusted hops only', async () => {
    const broker = await start({ TRUST_PROXY: '127.0.0.1' });
    const token = await mint(broker, { 'x-forwarded-for': spoofed['x-forwarded-for'] });
    const answer = await broker.request({
      path: '/api/proxy/who',
      headers: { origin, authorization: `Bearer ${token}`, ...spoofed, 'x-forwarded-proto': 'https' },
    });
    expect(answer.status).toBe(200);
    const seen = (JSON.parse(answer.body) as { headers: Record<string, string> }).headers;
    // 192.0.2.66 was written by the untrusted 198.51.100.7: dropped.
    expect(seen['x-forwarded-for']).toBe('198.51.100.7, 127.0.0.1');
    // Written by the trusted proxy: kept.
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen).not.toHaveProperty('x-real-ip');
  });
});

describe('answers and logs of proxied requests', () => {
  it('when the API names its software, then Server and X-Powered-By are stripped, other headers kept, and the log names the full path', async () => {
    const broker = await start();
    const token = await mint(broker);
    const answer = await broker.request({
      path: '/api/proxy/items/42?secret=query',
      headers: { origin, authorization: `Bearer ${token}` },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers).not.toHaveProperty('server');
    expect(answer.headers).not.toHaveProperty('x-powered-by');
    expect(answer.headers['x-api']).toBe('kept');
    const line = broker.logs
      .lines()
      .find(
        (entry) => entry.msg === 'request' && entry.status === 200 && String(entry.path).includes('items'),
      );
    expect(line).toMatchObject({ method: 'GET', path: '/api/proxy/items/42' });
  });
});

describe('Origin and Referer size', () => {
  const long = `https://app.example.com/${'a'.repeat(2048)}`;
  it.each([
    ['Origin', { origin: long }, '/api/client-token'],
    ['Referer', { referer: long }, '/api/client-token'],
    ['Origin', { origin: long }, '/api/proxy/items'],
  ])(
    'when %s is over 2048 bytes on %s, then 400 invalid_request says the limit',
    async (name, headers, path) => {
      const broker = shared;
      const answer = await broker.request({ path, headers });
      expect(answer.status).toBe(400);
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(answer.body)).toMatchObject({
        code: 'invalid_request',
        detail: `the ${name} header must be at most 2048 bytes`,
      });
    },
  );

  it('when Origin is exactly 2048 bytes, then it is not refused for its size', async () => {
    const broker = shared;
    const exact = `https://app.example.com/${'a'.repeat(2048 - 24)}`;
    expect(Buffer.byteLength(exact)).toBe(2048);
    const answer = await broker.request({ path: '/api/client-token', headers: { referer: exact } });
    expect(answer.status).toBe(200);
  });
});

describe('CORS preflights', () => {
  const preflight = (broker: FakeUpstreamBroker, path: string) =>
    broker.request({
      method: 'OPTIONS',
      path,
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });

  it('when a browser preflights a route it may call, then it is answered for the allowed origin', async () => {
    const broker = shared;
    for (const path of ['/api/client-token', '/api/proxy/items']) {
      const answer = await preflight(broker, path);
      expect(answer.status).toBe(204);
      expect(answer.headers['access-control-allow-origin']).toBe(origin);
    }
  });

  it.each(['/api/client-token/introspect', '/api/client-token/revoke'])(
    'when a browser preflights the backend route %s, then no CORS answer lets it through',
    async (path) => {
      const broker = shared;
      const answer = await preflight(broker, path);
      expect(answer.headers).not.toHaveProperty('access-control-allow-origin');
      expect(answer.headers).not.toHaveProperty('access-control-allow-methods');
      expect(answer.headers).not.toHaveProperty('access-control-allow-headers');
    },
  );
});
