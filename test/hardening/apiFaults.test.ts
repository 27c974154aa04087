import { createServer } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { type ApiServer, closedPort, patternChunk, startApiServer } from '../support/apiServers.js';
import { type Answer, type FakeUpstreamBroker, type OidcBroker, startBroker } from '../support/broker.js';
import { expectNoSecrets } from '../support/logs.js';
import { sleep } from '../support/waiting.js';

/**
 * Faults of the protected API behind `/api/proxy/*`, against a broker built as main.ts builds it, whose
 * token endpoint is a fake server that counts token requests. UPSTREAM_TIMEOUT_MS is 400 (connect,
 * headers and inter-chunk silence towards the API) and UPSTREAM_API_TIMEOUT_MS 1000 (the whole exchange).
 */

const origin = 'https://app.example.com';
const headersTimeoutMs = 400;
const totalTimeoutMs = 1000;

type Mode = 'ok' | 'slow' | 'error500' | 'error503' | 'reset' | 'drip' | 'refuseTokens';

/** The switchable API: what it does with the next request depends on `mode`. */
let mode: Mode = 'ok';
/** While set, the API holds its 401s until `size` requests have arrived, so a burst shares one token. */
let gate: { size: number; arrived: number; release: () => void; released: Promise<void> } | undefined;
let api: ApiServer;
let harness: FakeUpstreamBroker;
let clientToken: string;

function lineUp(size: number) {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  gate = { size, arrived: 0, release, released };
}

async function startSwitchableApi(): Promise<ApiServer> {
  return startApiServer((req, res, _record, body) => {
    void body.then(async () => {
      switch (mode) {
        case 'ok':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: true, bearer: (req.headers.authorization ?? '').length > 7 }));
          return;
        case 'slow': {
          const timer = setTimeout(() => res.end('too late'), 5_000);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case 'error500':
          res.writeHead(500, { 'content-type': 'application/json', 'x-api-trace': 'abc123' });
          res.end('{"error":"database_down","message":"the API is sick"}');
          return;
        case 'error503':
          res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '7' });
          res.end('maintenance');
          return;
        case 'reset':
          res.writeHead(200, {
            'content-type': 'application/octet-stream',
            'content-length': String(1024 * 1024),
          });
          res.write(patternChunk(0, 1024), () => setTimeout(() => req.socket.destroy(), 20));
          return;
        case 'drip': {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.flushHeaders();
          // Often enough to beat the inter-chunk timeout, forever: only the total deadline can end it.
          const timer = setInterval(() => res.write('.'), 100);
          res.on('close', () => clearInterval(timer));
          return;
        }
        case 'refuseTokens':
          if (gate) {
            gate.arrived += 1;
            if (gate.arrived >= gate.size) gate.release();
            await gate.released;
          }
          res.writeHead(401, {
            'content-type': 'application/json',
            'www-authenticate': 'Bearer error="invalid_token"',
          });
          res.end('{"error":"invalid_token"}');
          return;
      }
    });
  });
}

const proxied = (target: FakeUpstreamBroker = harness, token = clientToken) =>
  target.request({ path: '/api/proxy/items/1', headers: { origin, authorization: `Bearer ${token}` } });

/** Sends a request whose answer is expected to be cut: resolves with the error and the time it took. */
async function cutShort(): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  const error = await proxied().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  return { error, ms: performance.now() - started };
}

const counts = (target: FakeUpstreamBroker = harness) => ({
  api: api.requests.length,
  tokenRequests: target.upstream.requests.length,
});

/** Polls the proxy every 25 ms until it answers 200; returns how long that took. */
async function recoveryMs(target: FakeUpstreamBroker = harness, token = clientToken): Promise<number> {
  const started = performance.now();
  for (;;) {
    const answer = await proxied(target, token).catch(() => undefined);
    if (answer?.status === 200) return performance.now() - started;
    if (performance.now() - started > 3_000) throw new Error('the proxy did not recover within 3 s');
    await sleep(25);
  }
}

async function expectHealthy(target: FakeUpstreamBroker = harness) {
  const health = await target.request({ path: '/healthz' });
  expect(health.status).toBe(200);
}

function expectClean(answer: Answer, target: FakeUpstreamBroker = harness, token = clientToken) {
  expectNoSecrets(`${answer.body} ${JSON.stringify(answer.headers)}`, [...target.secrets(), token]);
}

beforeAll(async () => {
  api = await startSwitchableApi();
  harness = await startBroker({
    upstream: 'fake',
    env: { UPSTREAM_API_URL: `${api.origin}/v1/`, UPSTREAM_API_TIMEOUT_MS: String(totalTimeoutMs) },
  });
  clientToken = await harness.clientToken();
  // Warm the token cache: every fault below starts with one valid upstream token held.
  expect((await proxied()).status).toBe(200);
  expect(harness.upstream.requests).toHaveLength(1);
});

afterAll(async () => {
  await harness?.close();
  await api?.close();
});

describe('an API slower than the timeout', () => {
  it('when the API does not answer in time, then each request gets 504 upstream_timeout within the bound, once, and the proxy recovers', async () => {
    mode = 'slow';
    const before = counts();
    const answers = await Promise.all(Array.from({ length: 4 }, () => proxied()));
    for (const answer of answers) {
      expect(answer.status).toBe(504);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'upstream_timeout' });
      expect(answer.ms).toBeGreaterThanOrEqual(headersTimeoutMs - 50);
      // Far below the API's 5 s: the broker gave up on its own deadline (with slack for a loaded machine).
      expect(answer.ms).toBeLessThan(2_000);
      expectClean(answer);
    }
    // One attempt per request, no retry; a slow API is no reason to fetch another token.
    expect(counts()).toEqual({ api: before.api + 4, tokenRequests: before.tokenRequests });
    await expectHealthy();
    mode = 'ok';
    expect(await recoveryMs()).toBeLessThan(1_000);
  });
});

describe('API errors', () => {
  it('when the API answers 500, then the broker passes the API answer through unchanged (it does not rewrite API errors)', async () => {
    mode = 'error500';
    const before = counts();
    for (let i = 0; i < 3; i += 1) {
      const answer = await proxied();
      expect(answer.status).toBe(500);
      expect(answer.headers['content-type']).toBe('application/json');
      expect(answer.headers['x-api-trace']).toBe('abc123');
      expect(answer.body).toBe('{"error":"database_down","message":"the API is sick"}');
      expectClean(answer);
    }
    expect(counts()).toEqual({ api: before.api + 3, tokenRequests: before.tokenRequests });
    await expectHealthy();
    mode = 'ok';
    expect(await recoveryMs()).toBeLessThan(1_000);
  });

  it('when the API answers 503 with Retry-After, then the answer and its Retry-After are passed through, once per request', async () => {
    mode = 'error503';
    const before = counts();
    const answers = await Promise.all(Array.from({ length: 3 }, () => proxied()));
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.headers['retry-after']).toBe('7');
      expect(answer.body).toBe('maintenance');
    }
    expect(counts()).toEqual({ api: before.api + 3, tokenRequests: before.tokenRequests });
    await expectHealthy();
    mode = 'ok';
    expect(await recoveryMs()).toBeLessThan(1_000);
  });
});

describe('connections that break', () => {
  it('when the API resets the connection mid-body, then the client sees a cut connection and the broker stays healthy', async () => {
    mode = 'reset';
    const before = counts();
    for (let i = 0; i < 3; i += 1) {
      const { error, ms } = await cutShort();
      // The status line (200) was already sent: cutting the connection is the only honest signal left.
      expect(error).toBeInstanceOf(Error);
      expect(ms).toBeLessThan(1_000);
    }
    expect(counts()).toEqual({ api: before.api + 3, tokenRequests: before.tokenRequests });
    await expectHealthy();
    mode = 'ok';
    expect(await recoveryMs()).toBeLessThan(1_000);
  });

  it('when the API drips its body forever, then the total deadline cuts the answer and the broker stays healthy', async () => {
    mode = 'drip';
    const before = counts();
    const results = await Promise.all([cutShort(), cutShort()]);
    for (const { error, ms } of results) {
      expect(error).toBeInstanceOf(Error);
      expect(ms).toBeGreaterThanOrEqual(totalTimeoutMs - 50);
      expect(ms).toBeLessThan(totalTimeoutMs + 1_000);
    }
    expect(counts()).toEqual({ api: before.api + 2, tokenRequests: before.tokenRequests });
    // The broker abandoned those exchanges: the API saw its side of each one closed.
    const outcomes = await Promise.all(api.requests.slice(before.api).map((record) => record.done));
    expect(outcomes).toEqual(['closed', 'closed']);
    await expectHealthy();
    mode = 'ok';
    expect(await recoveryMs()).toBeLessThan(1_000);
  });

  it('when nothing listens at the API address, then 503 upstream_unavailable with Retry-After, and a 200 as soon as the API is back', async () => {
    const port = await closedPort();
    const refused = await startBroker({
      upstream: 'fake',
      env: {
        UPSTREAM_API_URL: `http://127.0.0.1:${port}/v1/`,
        UPSTREAM_API_TIMEOUT_MS: String(totalTimeoutMs),
      },
    });
    const healed = createServer((_req, res) => res.end('{"ok":true}'));
    try {
      const token = await refused.clientToken();
      for (let i = 0; i < 4; i += 1) {
        const answer = await proxied(refused, token);
        expect(answer.status).toBe(503);
        expect(answer.headers['retry-after']).toBe('1');
        expect(JSON.parse(answer.body)).toMatchObject({ code: 'upstream_unavailable' });
        expect(answer.ms).toBeLessThan(1_000);
        expectClean(answer, refused, token);
      }
      // One token for the first request, held for the others: a dead API costs no token requests.
      expect(refused.upstream.requests).toHaveLength(1);
      await expectHealthy(refused);
      await new Promise<void>((resolve) => healed.listen(port, '127.0.0.1', resolve));
      expect(await recoveryMs(refused, token)).toBeLessThan(1_000);
    } finally {
      healed.closeAllConnections();
      await new Promise((resolve) => healed.close(resolve));
    }
  });
});

describe('an API that refuses every token (401 storm)', () => {
  // A real oidc-provider as the token endpoint, and an injected clock to step over the renewal cool-down.
  const clock = createManualClock(Date.now());
  let stormApi: ApiServer;
  let broker: OidcBroker;
  let token: string;

  beforeAll(async () => {
    stormApi = await startSwitchableApi();
    broker = await startBroker({ env: { UPSTREAM_API_URL: `${stormApi.origin}/v1/` }, clock });
    token = await broker.clientToken();
  });

  afterAll(async () => {
    await broker?.close();
    await stormApi?.close();
  });

  const call = async (upload?: Buffer) => {
    const answer = await request(`${broker.url}/api/proxy/items`, {
      method: upload ? 'POST' : 'GET',
      headers: { origin, authorization: `Bearer ${token}` },
      ...(upload ? { body: upload } : {}),
    });
    const body = await answer.body.text();
    expect(`${body} ${JSON.stringify(answer.headers)}`).not.toContain(token);
    return { status: answer.statusCode, contentType: answer.headers['content-type'], body };
  };
  const stormCounts = () => ({ api: stormApi.requests.length, tokenRequests: broker.auth.tokenRequests() });

  /** Sends `size` requests at once, their 401s held until all arrived, so they share one upstream token. */
  async function burst(size: number) {
    lineUp(size);
    const answers = await Promise.all(Array.from({ length: size }, () => call()));
    gate = undefined;
    for (const answer of answers) {
      // The API's own refusal, not the broker's problem+json: the browser helper must not renew its
      // client token for it (the browser helper renews only on the broker's codes).
      expect(answer).toEqual({
        status: 401,
        contentType: 'application/json',
        body: '{"error":"invalid_token"}',
      });
    }
  }

  it('when bursts and a stream of requests are refused, then one renewal per cool-down, one retry per renewed token, and the 401 passed through', async () => {
    mode = 'ok';
    expect((await call()).status).toBe(200);
    mode = 'refuseTokens';

    let before = stormCounts();
    await burst(8);
    // Each request retried once with the one renewed token.
    expect(stormCounts()).toEqual({ api: before.api + 16, tokenRequests: before.tokenRequests + 1 });

    before = stormCounts();
    await burst(8);
    for (let i = 0; i < 10; i += 1) expect((await call()).status).toBe(401);
    // A body too large to replay is never retried; it must not renew the token on each request either.
    for (let i = 0; i < 3; i += 1) expect((await call(Buffer.alloc(100 * 1024, 1))).status).toBe(401);
    // Within the cool-down the renewed token was refused too: no renewal, no pointless retry.
    expect(stormCounts()).toEqual({ api: before.api + 21, tokenRequests: before.tokenRequests });

    clock.advance(5_000);
    before = stormCounts();
    await burst(8);
    expect(stormCounts()).toEqual({ api: before.api + 16, tokenRequests: before.tokenRequests + 1 });

    expect((await request(`${broker.url}/healthz`)).statusCode).toBe(200);
    before = stormCounts();
    mode = 'ok';
    expect((await call()).status).toBe(200);
    // The token renewed by the last burst is still held: healing costs no token request.
    expect(stormCounts().tokenRequests).toBe(before.tokenRequests);
    expectNoSecrets(
      JSON.stringify(broker.logs.lines()),
      [token, broker.apiKey, broker.auth.clientSecret],
      'log',
    );
  });
});

describe('what the broker kept', () => {
  it('when all the faults are over, then no log line holds a token or secret, and the abandoned exchanges were logged by code only', () => {
    const lines = harness.logs.lines();
    expectNoSecrets(JSON.stringify(lines), [...harness.secrets(), clientToken], 'log');
    const abandoned = lines.filter((line) => line.msg === 'proxied request abandoned');
    expect(abandoned.length).toBeGreaterThanOrEqual(5);
    for (const line of abandoned) expect(line).toMatchObject({ reason: 'failed mid-answer' });
  });
});
