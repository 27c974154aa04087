import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { createProxyForwarder, type ProxyForwarderOptions } from '../../src/proxy/forward.js';
import type { TokenCache, UpstreamToken } from '../../src/upstream/types.js';
import {
  type ApiServer,
  closedPort,
  downloadHashed,
  patternChunk,
  patternChunks,
  sha256Of,
  startApiServer,
  startDripApi,
  startEchoApi,
  startResetApi,
  startSlowApi,
  startStreamingApi,
  startTokenCheckingApi,
  uploadPattern,
} from '../support/apiServers.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { waitFor } from '../support/waiting.js';

const MiB = 1024 * 1024;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function secretToken(label: string): string {
  return registerSecret(`upstream token ${label}`, `upstream-${label}-${randomBytes(16).toString('hex')}`);
}

/** A cache isolated from the real one: hands out `tokens` in turn, renewing on invalidate only if still current (CAS). */
function createFakeCache(tokens: string[], failure?: BrokerError) {
  let index = 0;
  const calls = { gets: 0, invalidations: [] as string[], renewals: 0 };
  const cache: TokenCache = {
    get: async () => {
      calls.gets += 1;
      if (failure) throw failure;
      const accessToken = tokens[index] as string;
      return {
        accessToken,
        tokenType: 'Bearer',
        expiresAt: Date.now() + 60_000,
        obtainedAt: Date.now(),
      } satisfies UpstreamToken;
    },
    invalidate: async (accessToken) => {
      calls.invalidations.push(accessToken);
      if (accessToken === tokens[index] && index < tokens.length - 1) {
        index += 1;
        calls.renewals += 1;
      }
    },
    shareHeld: async () => undefined,
    status: () => ({ hasToken: true, expiresAt: undefined, lastError: undefined }),
    close: () => {},
  };
  return { cache, calls };
}

const defaultTimeouts = { connectMs: 1_000, headersMs: 2_000, bodyMs: 2_000, totalMs: 20_000 };

/** A bare node:http server mounting the forwarder at /api/proxy, with an error handler like the app's. */
async function startProxy(api: ApiServer | { origin: string }, options: Partial<ProxyForwarderOptions> = {}) {
  const captured = captureLogs();
  const token = secretToken('initial');
  const fake = createFakeCache([token]);
  const forwarder = createProxyForwarder({
    apiUrl: `${api.origin}/v1/`,
    credentials: fake.cache,
    logger: captured.logger,
    timeouts: defaultTimeouts,
    ...options,
  });
  const server = createServer((req, res) => {
    // What CORS middleware would already have set.
    res.setHeader('vary', 'Origin');
    res.setHeader('access-control-allow-origin', 'https://app.example.com');
    const url = req.url ?? '';
    forwarder
      .forward(req, res, {
        path: url.slice('/api/proxy'.length),
        clientIp: '203.0.113.9',
        protocol: 'https',
        log: captured.logger,
      })
      .catch((error: unknown) => {
        if (res.headersSent) return res.destroy();
        const problem = error instanceof BrokerError ? error : new BrokerError('internal_error');
        res.writeHead(problem.status, { ...problem.headers, 'content-type': 'application/problem+json' });
        res.end(
          JSON.stringify({ code: problem.code, message: problem.message, cause: String(problem.cause) }),
        );
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await forwarder.close();
  };
  cleanups.push(close);
  return { port, token, logs: captured, calls: fake.calls };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** `complete` when the body ended normally, `cut` when the connection was cut mid-answer. */
  outcome: 'complete' | 'cut';
  ms: number;
}

/** Reads a whole answer, noting whether it ended or was cut. */
function readAnswer(res: IncomingMessage, started: number): Promise<Answer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = (outcome: Answer['outcome']) =>
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: Buffer.concat(chunks),
        outcome,
        ms: performance.now() - started,
      });
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => done('complete'));
    res.on('error', () => done('cut'));
    res.on('close', () => {
      if (!res.complete) done('cut');
    });
  });
}

/** Sends a request with a raw path (node:http does not normalise `..` or `%2e` as fetch would). */
function call(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'GET',
      headers: options.headers,
      agent: false,
    });
    req.on('response', (res) => resolve(readAnswer(res, started)));
    req.on('error', reject);
    req.end(options.body);
  });
}

async function use<T extends ApiServer>(server: Promise<T>): Promise<T> {
  const api = await server;
  cleanups.push(() => api.close());
  return api;
}

describe('forwarding', () => {
  it('when a request is proxied, then method, path, query, body and safe headers reach the API with our token', async () => {
    const api = await use(
      startEchoApi({
        'set-cookie': ['session=upstream; Path=/', 'other=1'],
        connection: 'keep-alive, x-upstream-hop',
        'x-upstream-hop': 'hop',
        'keep-alive': 'timeout=99',
        'access-control-allow-origin': '*',
        'clear-site-data': '"*"',
        vary: 'Accept',
        'x-api-header': 'kept',
      }),
    );
    const proxy = await startProxy(api);
    const body = JSON.stringify({ hello: 'world' });
    const answer = await call(proxy.port, '/api/proxy/things/1?x=1&y=%2B%20z', {
      method: 'PATCH',
      body,
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        authorization: `Bearer ${registerSecret('client token', 'client-jwt-0123456789abcdef')}`,
        'x-client-token': 'client-jwt-0123456789abcdef',
        cookie: 'app-session=abc',
        origin: 'https://app.example.com',
        connection: 'keep-alive, x-client-hop',
        'x-client-hop': 'private',
        'x-forwarded-for': '198.51.100.1',
      },
    });

    expect(answer.status).toBe(200);
    const seen = JSON.parse(answer.body.toString()) as {
      method: string;
      url: string;
      headers: IncomingHttpHeaders;
    };
    expect(seen.method).toBe('PATCH');
    expect(seen.url).toBe('/v1/things/1?x=1&y=%2B%20z');
    expect(api.requests[0]?.body.toString()).toBe(body);
    expect(seen.headers.authorization).toBe(`Bearer ${proxy.token}`);
    expect(proxy.calls.gets).toBe(1);
    expect(seen.headers).not.toHaveProperty('x-client-token');
    expect(seen.headers).not.toHaveProperty('cookie');
    expect(seen.headers).not.toHaveProperty('origin');
    expect(seen.headers).not.toHaveProperty('x-client-hop');
    expect(seen.headers.host).toBe(`127.0.0.1:${api.port}`);
    expect(seen.headers['content-type']).toBe('application/json');
    expect(seen.headers['content-length']).toBe(String(body.length));
    // The client's own x-forwarded-for is dropped: nothing vouches for it.
    expect(seen.headers['x-forwarded-for']).toBe('203.0.113.9');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers['x-forwarded-host']).toBe(`127.0.0.1:${proxy.port}`);

    expect(answer.headers).not.toHaveProperty('set-cookie');
    expect(answer.headers).not.toHaveProperty('x-upstream-hop');
    expect(answer.headers).not.toHaveProperty('clear-site-data');
    expect(answer.headers['keep-alive']).not.toBe('timeout=99');
    expect(answer.headers['x-api-header']).toBe('kept');
    expect(answer.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(answer.headers.vary).toBe('Origin, Accept');
  });

  it('when a request is proxied, then one debug line gives method, path without query, status and duration', async () => {
    const api = await use(startEchoApi());
    const proxy = await startProxy(api);
    await call(proxy.port, '/api/proxy/things/2?email=someone%40example.com');
    await waitFor(() => proxy.logs.lines().some((entry) => entry.msg === 'proxied request'));
    const line = proxy.logs.lines().find((entry) => entry.msg === 'proxied request');
    expect(line).toMatchObject({
      level: 'debug',
      method: 'GET',
      upstreamPath: '/v1/things/2',
      status: 200,
      retried: false,
    });
    expect(line?.durationMs).toEqual(expect.any(Number));
    expect(JSON.stringify(proxy.logs.lines())).not.toContain('someone');
  });

  it.each([
    '/api/proxy/../admin',
    '/api/proxy/..%2fadmin',
    '/api/proxy/%2e%2e/admin',
    '/api/proxy/%2E%2E%2Fadmin',
    '/api/proxy/%252e%252e/admin',
    '/api/proxy/..\\admin',
    '/api/proxy/..%5cadmin',
    '/api/proxy//evil.com',
    '/api/proxy/%2F%2Fevil.com',
    '/api/proxy/a%00b',
    '/api/proxy/..;/admin',
    '/api/proxy/%C0%AE%C0%AE/admin',
  ])('when the path is %s, then the proxy answers invalid_request and the API sees nothing', async (path) => {
    const api = await use(startEchoApi());
    const proxy = await startProxy(api);
    const answer = await call(proxy.port, path);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ code: 'invalid_request' });
    expect(api.requests).toHaveLength(0);
    expect(proxy.calls.gets).toBe(0);
  });

  it('when the path holds legitimate encoded characters, then the API receives them intact', async () => {
    const api = await use(startEchoApi());
    const proxy = await startProxy(api);
    const answer = await call(proxy.port, '/api/proxy/items/a%20b%2Bc/group%2Fproject?q=%2B&r=a+b');
    expect(answer.status).toBe(200);
    expect(api.requests[0]?.url).toBe('/v1/items/a%20b%2Bc/group%2Fproject?q=%2B&r=a+b');
  });

  it('when the method is TRACE, then it is refused before the API could echo our token', async () => {
    const api = await use(startEchoApi());
    const proxy = await startProxy(api);
    const answer = await call(proxy.port, '/api/proxy/things', { method: 'TRACE' });
    expect(answer.status).toBe(405);
    expect(api.requests).toHaveLength(0);
  });

  it('when no upstream token can be had, then the cache error is the answer and the API sees nothing', async () => {
    const api = await use(startEchoApi());
    const captured = captureLogs();
    const fake = createFakeCache(
      [],
      new BrokerError('upstream_unavailable', { headers: { 'Retry-After': '7' } }),
    );
    const proxy = await startProxy(api, { credentials: fake.cache, logger: captured.logger });
    const answer = await call(proxy.port, '/api/proxy/things');
    expect(answer.status).toBe(503);
    expect(answer.headers['retry-after']).toBe('7');
    expect(api.requests).toHaveLength(0);
  });
});

describe('401 from the API', () => {
  it('when the API rejects the token, then it is invalidated by value, a new one fetched and the body replayed once', async () => {
    const [stale, fresh] = [secretToken('stale'), secretToken('fresh')];
    const fake = createFakeCache([stale, fresh]);
    const api = await use(startTokenCheckingApi((token) => token === fresh));
    const proxy = await startProxy(api, { credentials: fake.cache });
    const body = Buffer.from(JSON.stringify({ order: 42 }));

    const answer = await call(proxy.port, '/api/proxy/orders?x=1', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });

    expect(answer.status).toBe(200);
    expect(fake.calls.invalidations).toEqual([stale]);
    expect(fake.calls.gets).toBe(2);
    expect(api.requests.map((seen) => seen.headers.authorization)).toEqual([
      `Bearer ${stale}`,
      `Bearer ${fresh}`,
    ]);
    expect(api.requests.map((seen) => seen.bodySha256)).toEqual([sha256Of([body]), sha256Of([body])]);
    expect(api.requests[1]?.url).toBe('/v1/orders?x=1');
    await waitFor(() => proxy.logs.lines().some((line) => line.msg === 'proxied request'));
    expect(proxy.logs.lines().find((line) => line.msg === 'proxied request')).toMatchObject({
      retried: true,
      status: 200,
    });
  });

  it('when a small chunked body meets a 401, then it is replayed whole', async () => {
    const [stale, fresh] = [secretToken('stale'), secretToken('fresh')];
    const fake = createFakeCache([stale, fresh]);
    const api = await use(startTokenCheckingApi((token) => token === fresh));
    const proxy = await startProxy(api, { credentials: fake.cache });
    const chunks = [Buffer.from('first part,'), Buffer.from('second part')];
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: proxy.port,
        path: '/api/proxy/upload',
        method: 'PUT',
        agent: false,
      });
      req.on('response', (res) => resolve(readAnswer(res, performance.now())));
      req.on('error', reject);
      req.write(chunks[0]);
      setTimeout(() => req.end(chunks[1]), 20);
    });
    expect(answer.status).toBe(200);
    expect(api.requests).toHaveLength(2);
    expect(api.requests[1]?.headers['transfer-encoding']).toBeUndefined();
    expect(api.requests[1]?.body.toString()).toBe('first part,second part');
  });

  it('when the retried request gets a 401 too, then that 401 is passed through', async () => {
    const fake = createFakeCache([secretToken('stale'), secretToken('fresh')]);
    const api = await use(startTokenCheckingApi(() => false));
    const proxy = await startProxy(api, { credentials: fake.cache });
    const answer = await call(proxy.port, '/api/proxy/things');
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(api.requests).toHaveLength(2);
    expect(fake.calls.invalidations).toHaveLength(1);
  });

  it('when 20 concurrent requests meet a 401 with the same token, then each invalidates that token and all succeed', async () => {
    const [stale, fresh] = [secretToken('stale'), secretToken('fresh')];
    const fake = createFakeCache([stale, fresh]);
    let release: () => void = () => {};
    const allArrived = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Hold the 401s until all 20 requests reached the API with the stale token, so they truly overlap.
    const api = await use(
      startTokenCheckingApi(
        (token) => token === fresh,
        async () => {
          if (api.requests.filter((seen) => seen.headers.authorization === `Bearer ${stale}`).length === 20)
            release();
          await allArrived;
        },
      ),
    );
    const proxy = await startProxy(api, { credentials: fake.cache });

    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(proxy.port, `/api/proxy/things/${i}`)),
    );

    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    expect(fake.calls.invalidations).toEqual(Array(20).fill(stale));
    expect(fake.calls.renewals).toBe(1);
    expect(api.requests.filter((seen) => seen.headers.authorization === `Bearer ${fresh}`)).toHaveLength(20);
  });

  it('when a body larger than maxReplayBytes meets a 401, then it is not replayed and the 401 is passed through', async () => {
    const fake = createFakeCache([secretToken('stale'), secretToken('fresh')]);
    const api = await use(startTokenCheckingApi(() => false));
    const proxy = await startProxy(api, { credentials: fake.cache, maxReplayBytes: 64 * 1024 });
    const body = randomBytes(MiB);

    const answer = await call(proxy.port, '/api/proxy/upload', { method: 'POST', body });

    expect(answer.status).toBe(401);
    expect(answer.body.toString()).toBe('{"error":"invalid_token"}');
    expect(api.requests).toHaveLength(1);
    expect(api.requests[0]?.bodySha256).toBe(sha256Of([body]));
    expect(fake.calls.gets).toBe(1);
  });

  it('when a chunked body outgrows maxReplayBytes, then the buffered start and the rest reach the API in order', async () => {
    const fake = createFakeCache([secretToken('stale'), secretToken('fresh')]);
    const api = await use(startTokenCheckingApi(() => false));
    const proxy = await startProxy(api, { credentials: fake.cache, maxReplayBytes: 64 * 1024 });
    const chunks = [randomBytes(40 * 1024), randomBytes(40 * 1024), randomBytes(200 * 1024)];
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: proxy.port,
        path: '/api/proxy/upload',
        method: 'POST',
        agent: false,
      });
      req.on('response', (res) => resolve(readAnswer(res, performance.now())));
      req.on('error', reject);
      for (const chunk of chunks) req.write(chunk);
      req.end();
    });
    expect(answer.status).toBe(401);
    expect(api.requests).toHaveLength(1);
    expect(api.requests[0]?.bodyBytes).toBe(280 * 1024);
    expect(api.requests[0]?.bodySha256).toBe(sha256Of(chunks));
  });
});

describe('streaming', () => {
  const total = 32 * MiB;
  const expectedSha = sha256Of(patternChunks(total, MiB));

  it.each([
    ['with content-length', true],
    ['chunked', false],
  ])(
    'when a 32 MiB body is uploaded %s, then the API gets its first chunk before the client sent the rest',
    async (_, withLength) => {
      const api = await use(startEchoApi());
      const proxy = await startProxy(api);
      // A buffering proxy would wait for the whole body: the API would never see the first chunk.
      const answer = await uploadPattern(
        {
          host: '127.0.0.1',
          port: proxy.port,
          path: '/api/proxy/upload',
          method: 'PUT',
          headers: withLength ? { 'content-length': String(total) } : {},
        },
        total,
        () => waitFor(() => api.requests[0]?.firstChunkAt !== undefined),
      );
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body.toString())).toMatchObject({ bodyBytes: total, bodySha256: expectedSha });
    },
  );

  it('when the API sends a 32 MiB body, then the client gets the first chunk while the API is still producing', async () => {
    let clientSawFirst: () => void = () => {};
    const firstSeen = new Promise<void>((resolve) => {
      clientSawFirst = resolve;
    });
    const api = await use(
      startStreamingApi({ totalBytes: total, chunkBytes: 64 * 1024, afterFirstChunk: () => firstSeen }),
    );
    const proxy = await startProxy(api);
    let producedWhenFirstSeen = -1;
    const { bytes: received, sha } = await downloadHashed(
      { host: '127.0.0.1', port: proxy.port, path: '/api/proxy/download' },
      () => {
        producedWhenFirstSeen = api.produced();
        clientSawFirst();
      },
    );
    expect(producedWhenFirstSeen).toBeGreaterThan(0);
    expect(producedWhenFirstSeen).toBeLessThan(total);
    expect(received).toBe(total);
    expect(sha).toBe(expectedSha);
  });
});

describe('failures and timeouts', () => {
  it('when the API answers slower than headersMs, then the client gets 504 upstream_timeout promptly', async () => {
    const api = await use(startSlowApi(5_000));
    const proxy = await startProxy(api, { timeouts: { ...defaultTimeouts, headersMs: 200 } });
    const answer = await call(proxy.port, '/api/proxy/slow');
    expect(answer.status).toBe(504);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ code: 'upstream_timeout' });
    expect(answer.ms).toBeLessThan(2_000);
  });

  it('when nothing listens at the API address, then the client gets 503 upstream_unavailable with Retry-After', async () => {
    const port = await closedPort();
    const proxy = await startProxy({ origin: `http://127.0.0.1:${port}` });
    const answer = await call(proxy.port, '/api/proxy/things');
    expect(answer.status).toBe(503);
    expect(answer.headers['retry-after']).toBe('1');
    const problem = JSON.parse(answer.body.toString()) as Record<string, string>;
    expect(problem.code).toBe('upstream_unavailable');
    expect(JSON.stringify(problem)).not.toContain(proxy.token);
    expect(answer.ms).toBeLessThan(2_000);
  });

  it('when the API resets the connection before its headers, then the client gets 503 upstream_unavailable', async () => {
    const api = await use(startResetApi('before-headers'));
    const proxy = await startProxy(api);
    const answer = await call(proxy.port, '/api/proxy/things');
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ code: 'upstream_unavailable' });
  });

  it('when the API resets mid-body, then the client answer is cut and the proxy keeps serving', async () => {
    let first = true;
    const api = await use(
      startApiServer((req, res) => {
        if (!first) return res.end('ok');
        first = false;
        res.writeHead(200, { 'content-length': String(MiB) });
        res.write(patternChunk(0, 1024), () => setTimeout(() => req.socket.destroy(), 20));
      }),
    );
    const proxy = await startProxy(api);
    const cut = await call(proxy.port, '/api/proxy/big');
    expect(cut.status).toBe(200);
    expect(cut.outcome).toBe('cut');
    expect(cut.body.length).toBeLessThan(MiB);
    await waitFor(() => proxy.logs.lines().some((line) => line.msg === 'proxied request abandoned'));
    expect(proxy.logs.lines().find((line) => line.msg === 'proxied request abandoned')).toMatchObject({
      level: 'warn',
      reason: 'failed mid-answer',
      errorCode: expect.any(String),
    });
    const next = await call(proxy.port, '/api/proxy/small');
    expect(next).toMatchObject({ status: 200, outcome: 'complete' });
    expect(next.body.toString()).toBe('ok');
  });

  it('when the API stops sending its body, then the body timeout cuts the answer', async () => {
    const api = await use(startDripApi(60_000));
    const proxy = await startProxy(api, { timeouts: { ...defaultTimeouts, bodyMs: 200 } });
    const answer = await call(proxy.port, '/api/proxy/stalled');
    expect(answer.status).toBe(200);
    expect(answer.outcome).toBe('cut');
    expect(answer.ms).toBeLessThan(2_000);
    await expect(api.requests[0]?.done).resolves.toBe('closed');
  });

  it('when the API drips bytes forever just faster than bodyMs, then the total deadline cuts the answer', async () => {
    const api = await use(startDripApi(20));
    const proxy = await startProxy(api, { timeouts: { ...defaultTimeouts, bodyMs: 200, totalMs: 600 } });
    const answer = await call(proxy.port, '/api/proxy/drip');
    expect(answer.status).toBe(200);
    expect(answer.outcome).toBe('cut');
    expect(answer.body.length).toBeGreaterThan(5);
    expect(answer.ms).toBeGreaterThanOrEqual(550);
    expect(answer.ms).toBeLessThan(2_500);
    await expect(api.requests[0]?.done).resolves.toBe('closed');
  });

  it('when the client disconnects while the API works, then the API request is aborted', async () => {
    const api = await use(startApiServer(() => {}));
    const proxy = await startProxy(api);
    const req = request({ host: '127.0.0.1', port: proxy.port, path: '/api/proxy/long', agent: false });
    req.on('error', () => {});
    req.end();
    await waitFor(() => api.requests.length === 1);
    req.destroy();
    await expect(api.requests[0]?.done).resolves.toBe('closed');
    await waitFor(() => proxy.logs.lines().some((line) => line.msg === 'proxied request abandoned'));
    expect(proxy.logs.lines().find((line) => line.msg === 'proxied request abandoned')).toMatchObject({
      reason: 'client closed',
    });
  });

  it('when the client disconnects mid-download, then the API connection is closed', async () => {
    const api = await use(startDripApi(10));
    const proxy = await startProxy(api);
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: proxy.port, path: '/api/proxy/drip', agent: false });
      req.on('error', () => {});
      req.on('response', (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', reject);
      req.end();
    });
    await expect(api.requests[0]?.done).resolves.toBe('closed');
  });
});
