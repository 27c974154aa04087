import type { IncomingHttpHeaders } from 'node:http';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import {
  type ApiServer,
  closedPort,
  downloadHashed,
  patternChunks,
  type RecordedRequest,
  sha256Of,
  startEchoApi,
  startSlowApi,
  startStreamingApi,
  startTokenCheckingApi,
  uploadPattern,
} from '../support/apiServers.js';
import { type BrokerOptions, type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { call, type RawAnswer } from '../support/rawCall.js';
import { signingKeySet } from '../support/signingKeys.js';
import { waitFor } from '../support/waiting.js';

const appOrigin = 'https://app.example.com';
const siblingOrigin = 'https://other.example.com';
/** The address the browser seems to call from: written by a trusted proxy on loopback (`TRUST_PROXY=loopback`). */
const browserIp = '198.51.100.7';
const MiB = 1024 * 1024;

let auth: TestAuthServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  auth = await startTestAuthServer();
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await auth.close();
});

async function use<T extends { close(): Promise<void> }>(started: Promise<T>): Promise<T> {
  const server = await started;
  cleanups.push(() => server.close());
  return server;
}

function brokerWith(env: Record<string, string>, options: Pick<BrokerOptions, 'clock'> = {}) {
  return use(
    startBroker({
      upstream: auth,
      ...options,
      logLevel: 'debug',
      env: { ALLOWED_ORIGINS: `${appOrigin},${siblingOrigin}`, TRUST_PROXY: 'loopback', ...env },
    }),
  );
}

/** `POST /api/client-token` as a browser page on `origin` behind a proxy that saw `ip`. */
async function browserToken(
  broker: OidcBroker,
  { origin = appOrigin, ip = browserIp }: { origin?: string; ip?: string } = {},
): Promise<string> {
  const answer = await call(broker.url, '/api/client-token', {
    method: 'POST',
    headers: { origin, 'x-forwarded-for': ip },
  });
  expect(answer.status).toBe(200);
  return registerSecret('client token', answer.json().token as string);
}

/** `POST /api/auth/claim` with the broker's API key. */
async function claimToken(broker: OidcBroker, fields: { origin: string; ip?: string }): Promise<string> {
  const answer = await call(broker.url, '/api/auth/claim', {
    method: 'POST',
    headers: { authorization: `Bearer ${broker.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(fields),
  });
  expect(answer.status).toBe(200);
  return registerSecret('claimed client token', answer.json().token as string);
}

interface ProxyCall {
  token?: string;
  via?: 'authorization' | 'x-client-token';
  origin?: string;
  referer?: string;
  ip?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** A call through `/api/proxy` as the browser makes it: token, `Origin`, and the proxy-written address. */
function proxyCall(broker: OidcBroker, path: string, options: ProxyCall = {}): Promise<RawAnswer> {
  const { token, via = 'authorization', origin = appOrigin, ip = browserIp } = options;
  const headers: Record<string, string> = { 'x-forwarded-for': ip, ...options.headers };
  if (origin) headers.origin = origin;
  if (options.referer) headers.referer = options.referer;
  if (token) {
    if (via === 'authorization') headers.authorization = `Bearer ${token}`;
    else headers['x-client-token'] = token;
  }
  return call(broker.url, `/api/proxy${path}`, {
    method: options.method ?? 'GET',
    headers,
    body: options.body,
  });
}

/** Re-encodes a JWT's payload with `changes`, keeping the original header and signature. */
function tamper(token: string, changes: Record<string, unknown>): string {
  const [header, , signature] = token.split('.');
  const payload = Buffer.from(JSON.stringify({ ...decodeJwt(token), ...changes })).toString('base64url');
  return registerSecret('tampered client token', `${header}.${payload}.${signature}`);
}

function expectProblem(answer: RawAnswer, status: number, code: string): void {
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(answer.json()).toMatchObject({ status, code });
  if (code === 'invalid_client_token' || code === 'token_revoked') {
    expect(answer.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  }
}

describe('client token verification on /api/proxy', () => {
  const clock = createManualClock(Date.now());
  const ttl = 60;
  const tolerance = 5;
  let keys: string;
  let api: ApiServer;
  let broker: OidcBroker;

  beforeAll(async () => {
    keys = await signingKeySet('key-1');
    api = await use(startEchoApi());
    broker = await brokerWith(
      {
        UPSTREAM_API_URL: `${api.origin}/v1/`,
        SIGNING_KEYS: keys,
        CLIENT_TOKEN_TTL: String(ttl),
        CLIENT_TOKEN_CLOCK_TOLERANCE: String(tolerance),
      },
      { clock },
    );
  });

  beforeEach(() => {
    clock.set(Date.now());
    api.requests.length = 0;
  });

  /** Mints with a differently configured broker; its env overrides this suite's. */
  async function tokenFromOtherBroker(env: Record<string, string>): Promise<string> {
    const other = await brokerWith({ UPSTREAM_API_URL: `${api.origin}/v1/`, ...env });
    return claimToken(other, { origin: appOrigin, ip: browserIp });
  }

  it.each([
    ['Authorization: Bearer', 'authorization'],
    ['x-client-token', 'x-client-token'],
  ] as const)(
    'when the token comes in %s, then the API gets the call with our upstream token only',
    async (_, via) => {
      const token = await browserToken(broker);
      const answer = await proxyCall(broker, '/things/1?x=1', { token, via });
      expect(answer.status).toBe(200);
      const seen = answer.json() as { url: string; headers: IncomingHttpHeaders };
      expect(seen.url).toBe('/v1/things/1?x=1');
      expect(seen.headers).not.toHaveProperty('x-client-token');
      const upstream = /^Bearer (.+)$/.exec(seen.headers.authorization ?? '')?.[1] ?? '';
      registerSecret('upstream access token', upstream);
      // The API got the oidc-provider's access token, not the client token.
      expect(decodeJwt(upstream)).toMatchObject({ iss: auth.issuer, aud: auth.resource });
      expect(upstream).not.toBe(token);
    },
  );

  it('when no token is sent, then invalid_client_token with a bare Bearer challenge and no API call', async () => {
    const answer = await proxyCall(broker, '/things');
    expect(answer.status).toBe(401);
    expect(answer.json()).toMatchObject({ code: 'invalid_client_token' });
    // RFC 6750 §3.1: no credentials, so no error code in the challenge.
    expect(answer.headers['www-authenticate']).toBe('Bearer realm="token-broker"');
    expect(api.requests).toHaveLength(0);
  });

  it('when the token is used from another allowed origin, then origin_mismatch and no API call', async () => {
    const token = await browserToken(broker);
    expectProblem(
      await proxyCall(broker, '/things', { token, origin: siblingOrigin }),
      403,
      'origin_mismatch',
    );
    expect(api.requests).toHaveLength(0);
  });

  it('when the token is used from an origin that is not allowed, then origin_mismatch without CORS headers', async () => {
    const token = await browserToken(broker);
    const answer = await proxyCall(broker, '/things', { token, origin: 'https://evil.example' });
    expectProblem(answer, 403, 'origin_mismatch');
    expect(answer.headers).not.toHaveProperty('access-control-allow-origin');
    expect(api.requests).toHaveLength(0);
  });

  it('when the request carries neither Origin nor Referer, then origin_mismatch and no API call', async () => {
    const token = await browserToken(broker);
    const answer = await proxyCall(broker, '/things', { token, origin: '' });
    expectProblem(answer, 403, 'origin_mismatch');
    expect(answer.json().detail).toBe('no Origin or Referer header');
    expect(api.requests).toHaveLength(0);
  });

  it('when only a Referer from the token origin is sent, then the call goes through', async () => {
    const token = await browserToken(broker);
    const answer = await proxyCall(broker, '/things', {
      token,
      origin: '',
      referer: `${appOrigin}/page?x=1`,
    });
    expect(answer.status).toBe(200);
    expect(api.requests).toHaveLength(1);
  });

  it('when the token is used from another address, then ip_mismatch and no API call', async () => {
    const token = await browserToken(broker);
    expectProblem(await proxyCall(broker, '/things', { token, ip: '198.51.100.8' }), 403, 'ip_mismatch');
    expect(api.requests).toHaveLength(0);
  });

  it('when the caller address comes IPv4-mapped, then it is folded and matches the bound IPv4 address', async () => {
    const token = await browserToken(broker);
    const answer = await proxyCall(broker, '/things', { token, ip: `::ffff:${browserIp}` });
    expect(answer.status).toBe(200);
  });

  it('when the token expired beyond the clock tolerance, then invalid_client_token and no API call', async () => {
    const token = await browserToken(broker);
    clock.advance((ttl + tolerance - 1) * 1000);
    expect((await proxyCall(broker, '/things', { token })).status).toBe(200);
    clock.advance(2_000);
    const answer = await proxyCall(broker, '/things', { token });
    expectProblem(answer, 401, 'invalid_client_token');
    expect(answer.json().detail).toBe('The client token has expired');
    expect(api.requests).toHaveLength(1);
  });

  it('when the token was revoked, then token_revoked and no API call', async () => {
    const token = await browserToken(broker);
    const revoked = await call(broker.url, '/api/client-token/revoke', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${broker.apiKey}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    });
    expect(revoked.status).toBe(200);
    expectProblem(await proxyCall(broker, '/things', { token }), 401, 'token_revoked');
    expect(api.requests).toHaveLength(0);
  });

  it.each([
    ['the origin is changed', { origin: siblingOrigin }, siblingOrigin],
    ['the lifetime is extended', { exp: Math.floor(Date.now() / 1000) + 600 }, appOrigin],
    ['the IP binding is removed', { ip: undefined }, appOrigin],
  ])('when %s after signing, then invalid_client_token and no API call', async (_, changes, origin) => {
    const token = tamper(await browserToken(broker), changes);
    expectProblem(await proxyCall(broker, '/things', { token, origin }), 401, 'invalid_client_token');
    expect(api.requests).toHaveLength(0);
  });

  it('when the signature is altered, then invalid_client_token and no API call', async () => {
    const token = await browserToken(broker);
    const [header, payload, signature = ''] = token.split('.');
    const flipped = `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
    const forged = registerSecret('forged client token', `${header}.${payload}.${flipped}`);
    expectProblem(await proxyCall(broker, '/things', { token: forged }), 401, 'invalid_client_token');
    expect(api.requests).toHaveLength(0);
  });

  it('when another key signed the token under our kid, then invalid_client_token and no API call', async () => {
    const token = await tokenFromOtherBroker({ SIGNING_KEYS: await signingKeySet('key-1') });
    expect(decodeJwt(token)).toMatchObject({ origin: appOrigin, ip: browserIp });
    expectProblem(await proxyCall(broker, '/things', { token }), 401, 'invalid_client_token');
    expect(api.requests).toHaveLength(0);
  });

  it('when a key we do not hold signed the token, then invalid_client_token and no API call', async () => {
    const token = await tokenFromOtherBroker({ SIGNING_KEYS: await signingKeySet('key-2') });
    expectProblem(await proxyCall(broker, '/things', { token }), 401, 'invalid_client_token');
    expect(api.requests).toHaveLength(0);
  });

  it.each([
    ['iss', { CLIENT_TOKEN_ISSUER: 'urn:another-broker' }],
    ['aud', { CLIENT_TOKEN_AUDIENCE: 'urn:token-broker:another-api' }],
  ])(
    'when our key signed a token with another %s, then invalid_client_token and no API call',
    async (claim, env) => {
      const token = await tokenFromOtherBroker({ SIGNING_KEYS: keys, ...env });
      expect(decodeJwt(token)[claim]).toBe(Object.values(env)[0]);
      expectProblem(await proxyCall(broker, '/things', { token }), 401, 'invalid_client_token');
      expect(api.requests).toHaveLength(0);
    },
  );
});

describe('IP binding modes', () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await use(startEchoApi());
  });
  const brokerIn = (mode: string) =>
    brokerWith({ UPSTREAM_API_URL: api.origin, CLIENT_TOKEN_BIND_IP: mode, CLIENT_TOKEN_IPV6_PREFIX: '64' });

  it('when the mode is prefix, then a caller in the same /24 is accepted and one in another /24 refused', async () => {
    const broker = await brokerIn('prefix');
    const token = await browserToken(broker);
    expect(decodeJwt(token)).toMatchObject({ ip: browserIp, ip_prefix: 24 });
    expect((await proxyCall(broker, '/x', { token, ip: '198.51.100.200' })).status).toBe(200);
    expectProblem(await proxyCall(broker, '/x', { token, ip: '198.51.101.7' }), 403, 'ip_mismatch');
  });

  it('when the mode is prefix and the caller uses IPv6, then the /64 counts', async () => {
    const broker = await brokerIn('prefix');
    const token = await browserToken(broker, { ip: '2001:db8:1:2::7' });
    expect(decodeJwt(token)).toMatchObject({ ip: '2001:db8:1:2::7', ip_prefix: 64 });
    expect((await proxyCall(broker, '/x', { token, ip: '2001:db8:1:2:aaaa::1' })).status).toBe(200);
    expectProblem(await proxyCall(broker, '/x', { token, ip: '2001:db8:1:3::7' }), 403, 'ip_mismatch');
    expectProblem(await proxyCall(broker, '/x', { token, ip: browserIp }), 403, 'ip_mismatch');
  });

  it('when the mode is off, then the token carries no address and any caller address is accepted', async () => {
    const broker = await brokerIn('off');
    const token = await browserToken(broker);
    expect(decodeJwt(token)).not.toHaveProperty('ip');
    expect((await proxyCall(broker, '/x', { token, ip: '203.0.113.50' })).status).toBe(200);
  });

  it.each([
    ['exact', { ip: '192.0.2.10' }, ['ip_prefix']],
    ['prefix', { ip: '192.0.2.10', ip_prefix: 24 }, []],
    ['off', {}, ['ip', 'ip_prefix']],
  ] as const)(
    'when the claim route mints in %s mode, then the token records what was bound',
    async (mode, bound, absent) => {
      const broker = await brokerIn(mode);
      const claims = decodeJwt(await claimToken(broker, { origin: appOrigin, ip: '192.0.2.10' }));
      expect(claims).toMatchObject({ origin: appOrigin, ...bound });
      for (const name of absent) expect(claims).not.toHaveProperty(name);
    },
  );
});

describe('401 from the API', () => {
  /** An API that refuses the first access token it ever sees (as after a key rotation) and accepts later ones. */
  async function apiRefusingFirstToken(hold401?: (record: RecordedRequest) => Promise<void>) {
    let first: string | undefined;
    const tokens = new Set<string>();
    const api = await use(
      startTokenCheckingApi((token) => {
        tokens.add(registerSecret('upstream access token', token));
        first ??= token;
        return token !== first;
      }, hold401),
    );
    return { api, tokens };
  }

  it('when the API refuses the token, then the broker renews it at the authorization server once and retries once', async () => {
    const { api, tokens } = await apiRefusingFirstToken();
    const broker = await brokerWith({ UPSTREAM_API_URL: api.origin });
    const token = await browserToken(broker);
    const before = auth.tokenRequests();
    const body = JSON.stringify({ order: 42 });
    const answer = await proxyCall(broker, '/orders', {
      token,
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(answer.status).toBe(200);
    expect(auth.tokenRequests() - before).toBe(2);
    expect(api.requests).toHaveLength(2);
    expect(tokens.size).toBe(2);
    expect(api.requests.map((record) => record.body.toString())).toEqual([body, body]);

    // The renewed token is cached: the next call costs no token request and no retry.
    expect((await proxyCall(broker, '/orders', { token })).status).toBe(200);
    expect(auth.tokenRequests() - before).toBe(2);
    expect(api.requests).toHaveLength(3);
  });

  it('when 10 concurrent calls meet a 401 with the same token, then one renewal serves all retries', async () => {
    const burst = 10;
    let api: ApiServer | undefined;
    const refusing = await apiRefusingFirstToken(() => waitFor(() => (api?.requests.length ?? 0) >= burst));
    api = refusing.api;
    const broker = await brokerWith({ UPSTREAM_API_URL: api.origin });
    const token = await browserToken(broker);
    const before = auth.tokenRequests();
    const answers = await Promise.all(
      Array.from({ length: burst }, () => proxyCall(broker, '/x', { token })),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(burst).fill(200));
    expect(auth.tokenRequests() - before).toBe(2);
    expect(refusing.tokens.size).toBe(2);
    expect(api.requests).toHaveLength(2 * burst);
  });
});

describe('streaming through the app', () => {
  const total = 16 * MiB;
  const expectedSha = sha256Of(patternChunks(total, MiB));

  it('when a 16 MiB body is uploaded, then the API gets its first chunk before the browser sent the rest', async () => {
    const api = await use(startEchoApi());
    const broker = await brokerWith({ UPSTREAM_API_URL: api.origin });
    const token = await browserToken(broker);
    const { hostname, port } = new URL(broker.url);
    // A broker that buffered the body (a body parser, a verification step reading it) would never let
    // the first chunk reach the API before the rest was sent.
    const answer = await uploadPattern(
      {
        host: hostname,
        port,
        path: '/api/proxy/upload',
        method: 'PUT',
        headers: {
          authorization: `Bearer ${token}`,
          origin: appOrigin,
          'x-forwarded-for': browserIp,
          'content-length': String(total),
        },
      },
      total,
      () => waitFor(() => api.requests[0]?.firstChunkAt !== undefined),
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ bodyBytes: total, bodySha256: expectedSha });
  });

  it('when the API sends 16 MiB, then the browser gets the first chunk while the API is still producing', async () => {
    let clientSawFirst: () => void = () => {};
    const firstSeen = new Promise<void>((resolve) => {
      clientSawFirst = resolve;
    });
    const api = await use(
      startStreamingApi({ totalBytes: total, chunkBytes: 64 * 1024, afterFirstChunk: () => firstSeen }),
    );
    const broker = await brokerWith({ UPSTREAM_API_URL: api.origin });
    const token = await browserToken(broker);
    const { hostname, port } = new URL(broker.url);
    let producedWhenFirstSeen = -1;
    const received = await downloadHashed(
      {
        host: hostname,
        port,
        path: '/api/proxy/download',
        headers: { authorization: `Bearer ${token}`, origin: appOrigin, 'x-forwarded-for': browserIp },
      },
      () => {
        producedWhenFirstSeen = api.produced();
        clientSawFirst();
      },
    );
    expect(producedWhenFirstSeen).toBeGreaterThan(0);
    expect(producedWhenFirstSeen).toBeLessThan(total);
    expect(received).toEqual({ bytes: total, sha: expectedSha });
  });
});

describe('what reaches the API and what comes back', () => {
  let api: ApiServer;
  let broker: OidcBroker;
  let token: string;

  beforeAll(async () => {
    api = await use(
      startEchoApi({
        'set-cookie': ['session=upstream; Path=/', 'tracking=1'],
        connection: 'keep-alive, x-upstream-hop',
        'x-upstream-hop': 'hop',
        'keep-alive': 'timeout=99',
        'access-control-allow-origin': '*',
        'strict-transport-security': 'max-age=63072000',
        'x-api-header': 'kept',
      }),
    );
    broker = await brokerWith({ UPSTREAM_API_URL: `${api.origin}/v1/` });
    token = await browserToken(broker);
  });

  beforeEach(() => {
    api.requests.length = 0;
  });

  it('when a call carries cookies and hop-by-hop headers, then neither reaches the API nor comes back', async () => {
    const answer = await proxyCall(broker, '/things?q=1', {
      token,
      headers: {
        cookie: 'app-session=abc',
        connection: 'keep-alive, x-client-hop',
        'x-client-hop': 'private',
        'proxy-authorization': 'Basic cHJveHk6cHJveHk=',
        accept: 'application/json',
      },
    });
    expect(answer.status).toBe(200);
    const seen = answer.json() as { headers: IncomingHttpHeaders };
    for (const name of ['cookie', 'x-client-hop', 'proxy-authorization', 'origin', 'x-client-token']) {
      expect(seen.headers).not.toHaveProperty(name);
    }
    expect(seen.headers.accept).toBe('application/json');
    // Rebuilt from the trusted hops: the browser, then the loopback proxy that connected to the broker.
    expect(seen.headers['x-forwarded-for']).toBe(`${browserIp}, 127.0.0.1`);
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    registerSecret('upstream access token', seen.headers.authorization?.slice('Bearer '.length) ?? '');
    expect(seen.headers.authorization).not.toContain(token);

    for (const name of ['set-cookie', 'x-upstream-hop']) expect(answer.headers).not.toHaveProperty(name);
    // The broker's own HSTS policy (helmet) stands; the API's may not replace it for the whole origin.
    expect(answer.headers['strict-transport-security']).not.toBe('max-age=63072000');
    expect(answer.headers['keep-alive']).not.toBe('timeout=99');
    expect(answer.headers['x-api-header']).toBe('kept');
    expect(answer.headers['access-control-allow-origin']).toBe(appOrigin);
  });

  it.each([
    '/api/proxy/../admin',
    '/api/proxy/..%2fadmin',
    '/api/proxy/%2e%2e/admin',
    '/api/proxy/.%2E/admin',
    '/api/proxy/%252e%252e/admin',
    '/api/proxy/%25252e%25252e%25252fadmin',
    '/api/proxy/a/..%5c..%5cadmin',
    '/api/proxy/%C0%AE%C0%AE/admin',
    '/api/proxy/..;/admin',
    '/api/proxy//evil.example/x',
    '/api/proxy/%2F%2Fevil.example',
    '/api/proxy/a%00b',
  ])('when the browser asks for %s, then invalid_request and the API sees nothing', async (path) => {
    const answer = await call(broker.url, path, {
      headers: { authorization: `Bearer ${token}`, origin: appOrigin, 'x-forwarded-for': browserIp },
    });
    expectProblem(answer, 400, 'invalid_request');
    expect(api.requests).toHaveLength(0);
  });

  it('when the path holds legitimate encoded characters, then the API receives them under its base path', async () => {
    const answer = await proxyCall(broker, '/items/a%20b/group%2Fproject?q=%2B', { token });
    expect(answer.status).toBe(200);
    expect(api.requests[0]?.url).toBe('/v1/items/a%20b/group%2Fproject?q=%2B');
  });

  it('when an allowed origin sends a preflight, then it may send the token headers and the answer varies by Origin', async () => {
    const answer = await call(broker.url, '/api/proxy/things', {
      method: 'OPTIONS',
      headers: {
        origin: appOrigin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, traceparent, tracestate',
      },
    });
    expect(answer.status).toBe(204);
    expect(answer.headers['access-control-allow-origin']).toBe(appOrigin);
    const allowed = String(answer.headers['access-control-allow-headers']).split(',');
    expect(allowed).toEqual(
      expect.arrayContaining([
        'authorization',
        'x-client-token',
        'content-type',
        'traceparent',
        'tracestate',
      ]),
    );
    expect(answer.headers['access-control-allow-methods']).toContain('POST');
    expect(answer.headers.vary).toContain('Origin');
    expect(api.requests).toHaveLength(0);
  });

  it('when a refused origin sends a preflight, then no CORS header allows anything', async () => {
    const answer = await call(broker.url, '/api/proxy/things', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization',
      },
    });
    for (const name of Object.keys(answer.headers)) expect(name).not.toMatch(/^access-control-allow-/);
    expect(answer.headers.vary).toContain('Origin');
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(api.requests).toHaveLength(0);
  });
});

describe('API failures', () => {
  it('when the API answers slower than UPSTREAM_TIMEOUT_MS, then 504 upstream_timeout comes quickly', async () => {
    const api = await use(startSlowApi(10_000));
    const broker = await brokerWith({ UPSTREAM_API_URL: api.origin, UPSTREAM_TIMEOUT_MS: '400' });
    const token = await browserToken(broker);
    // Warm the upstream token, so the timing below is the API's alone.
    await broker.broker.upstreams.list[0]?.credentials.get();
    const answer = await proxyCall(broker, '/slow', { token });
    expectProblem(answer, 504, 'upstream_timeout');
    expect(answer.ms).toBeLessThan(2_000);
    expect(api.requests).toHaveLength(1);
  });

  it('when nothing listens at the API address, then 503 upstream_unavailable with Retry-After', async () => {
    const broker = await brokerWith({ UPSTREAM_API_URL: `http://127.0.0.1:${await closedPort()}/` });
    const token = await browserToken(broker);
    const answer = await proxyCall(broker, '/anything', { token });
    expectProblem(answer, 503, 'upstream_unavailable');
    expect(answer.headers['retry-after']).toBe('1');
  });
});

describe('introspection and revocation', () => {
  const clock = createManualClock(Date.now());
  let broker: OidcBroker;

  beforeAll(async () => {
    const api = await use(startEchoApi());
    broker = await brokerWith({ UPSTREAM_API_URL: api.origin, CLIENT_TOKEN_TTL: '60' }, { clock });
  });

  beforeEach(() => clock.set(Date.now()));

  /** `key`: the broker's API key unless given; `null` sends none. */
  const backend = (path: string, token: string | undefined, key?: string | null) =>
    call(broker.url, `/api/client-token/${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(key === null ? {} : { authorization: `Bearer ${key ?? broker.apiKey}` }),
      },
      body: token === undefined ? '' : new URLSearchParams({ token }).toString(),
    });

  it('when a live token is introspected, then RFC 7662 active:true with its claims', async () => {
    const token = await browserToken(broker);
    const answer = await backend('introspect', token);
    expect(answer.status).toBe(200);
    expect(answer.headers['cache-control']).toBe('no-store');
    const claims = decodeJwt(token);
    expect(answer.json()).toEqual({
      active: true,
      token_type: 'Bearer',
      iss: claims.iss,
      aud: claims.aud,
      sub: appOrigin,
      origin: appOrigin,
      ip: browserIp,
      iat: claims.iat,
      exp: claims.exp,
      jti: claims.jti,
      upstreams: ['default'],
    });
  });

  it('when garbage, an expired or a revoked token is introspected, then only active:false', async () => {
    expect((await backend('introspect', 'not-a-token')).json()).toEqual({ active: false });

    const revoked = await browserToken(broker);
    expect((await backend('revoke', revoked)).status).toBe(200);
    expect((await backend('introspect', revoked)).json()).toEqual({ active: false });

    const expired = await browserToken(broker);
    clock.advance(70_000);
    expect((await backend('introspect', expired)).json()).toEqual({ active: false });
  });

  it('when an unknown, garbage or already revoked token is revoked, then RFC 7009 200 all the same', async () => {
    const other = await brokerWith({ UPSTREAM_API_URL: 'http://127.0.0.1:9/' });
    const foreign = await claimToken(other, { origin: appOrigin });
    for (const token of [foreign, 'garbage']) expect((await backend('revoke', token)).status).toBe(200);
    const token = await browserToken(broker);
    expect((await backend('revoke', token)).status).toBe(200);
    expect((await backend('revoke', token)).status).toBe(200);
  });

  it('when the API key is missing or wrong, then both routes answer invalid_api_key and revoke nothing', async () => {
    const token = await browserToken(broker);
    for (const route of ['introspect', 'revoke']) {
      for (const key of [null, 'not-the-key-0123456789']) {
        const answer = await backend(route, token, key);
        expect(answer.status).toBe(401);
        expect(answer.json()).toMatchObject({ code: 'invalid_api_key' });
      }
    }
    expect((await backend('introspect', token)).json()).toMatchObject({ active: true });
  });

  it('when no token parameter is sent, then invalid_request', async () => {
    expectProblem(await backend('introspect', undefined), 400, 'invalid_request');
    expectProblem(await backend('revoke', undefined), 400, 'invalid_request');
  });
});
