import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  BrokerClientError,
  type BrokerClientEvent,
  type BrokerClientOptions,
  createBrokerClient,
} from '../../src/browser/client.js';
import { createManualClock } from '../../src/clock.js';

interface Call {
  url: string;
  init: RequestInit;
  headers: Headers;
}

type Answer = Response | Promise<Response>;

const BASE = 'https://broker.test';
const TOKEN_URL = `${BASE}/api/client-token`;

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

function problem(code: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(
    JSON.stringify({ type: 'about:blank', title: code, status, detail: `because ${code}`, code }),
    {
      status,
      headers: { 'content-type': 'application/problem+json; charset=utf-8', ...headers },
    },
  );
}

/**
 * A fake broker behind a fake `fetch`: the token endpoint mints `token-1`, `token-2`, ... with the
 * given lifetime unless `token` answers otherwise; the proxy answers 200 unless `proxy` does.
 */
function fakeBroker(
  options: {
    expiresIn?: number;
    token?: (n: number) => Answer | undefined;
    proxy?: (call: Call, n: number) => Answer | undefined;
  } = {},
) {
  const tokenCalls: Call[] = [];
  const proxyCalls: Call[] = [];
  let minted = 0;
  const fetch = vi.fn(async (url: string, init: RequestInit): Promise<Response> => {
    const call = { url, init, headers: new Headers(init.headers) };
    if (url === TOKEN_URL) {
      tokenCalls.push(call);
      const custom = options.token?.(tokenCalls.length);
      if (custom) return custom;
      minted += 1;
      const expiresIn = options.expiresIn ?? 900;
      return json(
        {
          token: `token-${minted}`,
          tokenType: 'Bearer',
          expiresIn,
          expiresAt: new Date(Date.now() + expiresIn * 1000).toISOString(),
        },
        200,
        { 'cache-control': 'no-store' },
      );
    }
    proxyCalls.push(call);
    return options.proxy?.(call, proxyCalls.length) ?? json({ hello: 'world' });
  });
  return { fetch, tokenCalls, proxyCalls };
}

function client(broker: ReturnType<typeof fakeBroker>, options: BrokerClientOptions = {}) {
  const events: BrokerClientEvent[] = [];
  const instance = createBrokerClient({
    baseUrl: BASE,
    fetch: broker.fetch,
    onEvent: (event) => events.push(event),
    ...options,
  });
  return { client: instance, events };
}

function bearer(call: Call | undefined): string | null | undefined {
  return call?.headers.get('authorization');
}

afterEach(() => {
  vi.useRealTimers();
});

describe('getToken', () => {
  it('when 20 callers ask at once, then one token request serves them all', async () => {
    const broker = fakeBroker();
    const { client: c } = client(broker, { autoRefresh: false });

    const tokens = await Promise.all(Array.from({ length: 20 }, () => c.getToken()));

    expect(broker.tokenCalls).toHaveLength(1);
    expect(new Set(tokens)).toEqual(new Set(['token-1']));
    expect(broker.tokenCalls[0]?.init.method).toBe('POST');
  });

  it('when the token is inside its lifetime minus the margin, then it is reused; past that, a new one is fetched', async () => {
    const clock = createManualClock();
    const broker = fakeBroker({ expiresIn: 900 });
    const { client: c } = client(broker, { now: clock.now, autoRefresh: false });

    expect(await c.getToken()).toBe('token-1');
    clock.advance(869_999);
    expect(await c.getToken()).toBe('token-1');
    expect(broker.tokenCalls).toHaveLength(1);

    clock.advance(1);
    expect(await c.getToken()).toBe('token-2');
    expect(broker.tokenCalls).toHaveLength(2);
  });

  it.each([
    [900, 30_000],
    [10, 2_000],
    [3, 1_000],
    [1, 500],
  ])('when the token lives %i s, then it is renewed %i ms before expiry', async (expiresIn, margin) => {
    const clock = createManualClock();
    const { client: c } = client(fakeBroker({ expiresIn }), { now: clock.now, autoRefresh: false });

    await c.getToken();

    const info = c.tokenInfo();
    expect(info?.expiresAt).toBe(clock.now() + expiresIn * 1000);
    expect((info?.expiresAt ?? 0) - (info?.renewAt ?? 0)).toBe(margin);
  });

  it('when the server clock disagrees with ours, then expiry is counted from expiresIn on our clock', async () => {
    const clock = createManualClock(Date.UTC(2030, 0, 1));
    const { client: c } = client(fakeBroker({ expiresIn: 60 }), { now: clock.now, autoRefresh: false });

    await c.getToken();

    expect(c.tokenInfo()?.expiresAt).toBe(Date.UTC(2030, 0, 1) + 60_000);
  });

  it('when a 3 s token reaches its margin, then the background timer renews it before any call', async () => {
    vi.useFakeTimers();
    const broker = fakeBroker({ expiresIn: 3 });
    const { client: c, events } = client(broker);

    await c.getToken();
    await vi.advanceTimersByTimeAsync(1_999);
    expect(broker.tokenCalls).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(1);
    expect(broker.tokenCalls).toHaveLength(2);
    expect(c.tokenInfo()?.token).toBe('token-2');

    await vi.advanceTimersByTimeAsync(2_000);
    expect(broker.tokenCalls).toHaveLength(3);
    expect(events.map((event) => (event.type === 'token' ? event.reason : event.type))).toEqual([
      'initial',
      'renewal',
      'renewal',
    ]);
    c.clear();
  });

  it('when clear() is called, then background renewal stops and the next call fetches a new token', async () => {
    vi.useFakeTimers();
    const broker = fakeBroker({ expiresIn: 3 });
    const { client: c, events } = client(broker);

    await c.getToken();
    c.clear();
    await vi.advanceTimersByTimeAsync(10_000);

    expect(broker.tokenCalls).toHaveLength(1);
    expect(c.tokenInfo()).toBeUndefined();
    expect(events.at(-1)).toEqual({ type: 'cleared' });
    expect(await c.getToken()).toBe('token-2');
    c.clear();
  });

  it('when clear() is called while a token request is on its way, then its answer is not kept', async () => {
    let release: (response: Response) => void = () => {};
    const broker = fakeBroker({
      token: (n) => (n === 1 ? new Promise<Response>((resolve) => (release = resolve)) : undefined),
    });
    const { client: c } = client(broker, { autoRefresh: false });

    const first = c.getToken();
    c.clear();
    release(json({ token: 'before-clear', expiresIn: 900 }));

    expect(await first).toBe('before-clear');
    expect(c.tokenInfo()).toBeUndefined();
    expect(await c.getToken()).toBe('token-1');
  });

  it('when refresh() is called, then a new token replaces a still-fresh one', async () => {
    const broker = fakeBroker();
    const { client: c, events } = client(broker, { autoRefresh: false });

    await c.getToken();
    expect(await c.refresh()).toBe('token-2');

    expect(await c.getToken()).toBe('token-2');
    expect(events.at(-1)).toMatchObject({ type: 'token', reason: 'refresh' });
  });

  it('when renewal fails but the token has not expired yet, then the old token is still used', async () => {
    const clock = createManualClock();
    const broker = fakeBroker({
      expiresIn: 10,
      token: (n) => (n > 1 ? problem('upstream_rejected', 502) : undefined),
    });
    const { client: c } = client(broker, { now: clock.now, autoRefresh: false });

    await c.getToken();
    clock.advance(9_000);
    expect(await c.getToken()).toBe('token-1');

    clock.advance(1_000);
    await expect(c.getToken()).rejects.toMatchObject({ code: 'upstream_rejected', status: 502 });
  });
});

describe('token endpoint errors', () => {
  it('when the origin is not allowed, then BrokerClientError carries code, status and detail', async () => {
    const broker = fakeBroker({ token: () => problem('origin_not_allowed', 403) });
    const { client: c } = client(broker);

    const error = await c.getToken().catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(BrokerClientError);
    expect(error).toMatchObject({
      name: 'BrokerClientError',
      code: 'origin_not_allowed',
      status: 403,
      detail: 'because origin_not_allowed',
      retryAfter: undefined,
    });
    expect(broker.tokenCalls).toHaveLength(1);
  });

  it('when the token endpoint answers 503 with Retry-After, then the client waits that long and asks once more', async () => {
    vi.useFakeTimers();
    const broker = fakeBroker({
      token: (n) => (n === 1 ? problem('upstream_unavailable', 503, { 'retry-after': '2' }) : undefined),
    });
    const { client: c, events } = client(broker, { autoRefresh: false });

    const token = c.getToken();
    await vi.advanceTimersByTimeAsync(1_999);
    expect(broker.tokenCalls).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(1);
    expect(await token).toBe('token-1');
    expect(broker.tokenCalls).toHaveLength(2);
    expect(events[0]).toEqual({ type: 'wait', status: 503, code: 'upstream_unavailable', retryAfter: 2 });
  });

  it('when Retry-After is an HTTP-date, then the client waits until that date', async () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1) });
    const when = new Date(Date.UTC(2026, 0, 1, 0, 0, 5)).toUTCString();
    const broker = fakeBroker({
      token: (n) => (n === 1 ? problem('rate_limited', 429, { 'retry-after': when }) : undefined),
    });
    const { client: c } = client(broker, { autoRefresh: false });

    const token = c.getToken();
    await vi.advanceTimersByTimeAsync(4_999);
    expect(broker.tokenCalls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);

    expect(await token).toBe('token-1');
  });

  it('when the token endpoint is still busy after the wait, then the error reaches the caller', async () => {
    vi.useFakeTimers();
    const broker = fakeBroker({ token: () => problem('rate_limited', 429, { 'retry-after': '1' }) });
    const { client: c } = client(broker, { autoRefresh: false });

    const outcome = c.getToken().catch((caught: unknown) => caught);
    await vi.advanceTimersByTimeAsync(5_000);

    expect(await outcome).toMatchObject({ code: 'rate_limited', status: 429, retryAfter: 1 });
    expect(broker.tokenCalls).toHaveLength(2);
  });

  it('when Retry-After is longer than maxRetryAfter, then the client fails at once', async () => {
    const broker = fakeBroker({
      token: () => problem('upstream_unavailable', 503, { 'retry-after': '120' }),
    });
    const { client: c } = client(broker, { maxRetryAfter: 60 });

    await expect(c.getToken()).rejects.toMatchObject({ code: 'upstream_unavailable', retryAfter: 120 });
    expect(broker.tokenCalls).toHaveLength(1);
  });

  it('when the broker cannot be reached, then the code is network_error', async () => {
    const c = createBrokerClient({
      baseUrl: BASE,
      fetch: () => Promise.reject(new TypeError('fetch failed')),
    });

    await expect(c.getToken()).rejects.toMatchObject({ code: 'network_error', status: 0 });
  });

  it('when something other than a broker answers 404 (baseUrl left out on another origin), then the error says to set baseUrl', async () => {
    const c = createBrokerClient({
      baseUrl: BASE,
      fetch: () =>
        Promise.resolve(
          new Response('<h1>Not Found</h1>', { status: 404, headers: { 'content-type': 'text/html' } }),
        ),
    });

    await expect(c.getToken()).rejects.toMatchObject({
      code: 'http_error',
      status: 404,
      message: expect.stringContaining("set baseUrl to the broker's URL"),
    });
  });

  it.each([
    ['a 200 without a token', () => json({ expiresIn: 900 })],
    ['a 200 with a negative lifetime', () => json({ token: 'x', expiresIn: -1 })],
    ['a 200 that is not JSON', () => new Response('<html>', { status: 200 })],
  ])('when the token endpoint answers %s, then the code is invalid_response', async (_, answer) => {
    const { client: c } = client(fakeBroker({ token: answer }));

    await expect(c.getToken()).rejects.toMatchObject({ code: 'invalid_response', status: 200 });
  });

  it('when an error answer is not problem+json, then the code is http_error with the status', async () => {
    const { client: c } = client(fakeBroker({ token: () => new Response('Not Found', { status: 404 }) }));

    await expect(c.getToken()).rejects.toMatchObject({ code: 'http_error', status: 404 });
  });
});

describe('fetch through the proxy', () => {
  it('when a path is fetched, then it goes to baseUrl + proxyPath + path with the bearer token and the caller headers', async () => {
    const broker = fakeBroker();
    const { client: c } = client(broker, { baseUrl: `${BASE}/`, proxyPath: '/gateway/' });
    const headers = new Headers({ 'x-trace': 'abc', authorization: 'Basic caller' });

    const response = await c.fetch('/v1/hello?x=1', { method: 'PUT', headers, body: 'payload' });
    await c.fetch('v1/bare');

    expect(await response.json()).toEqual({ hello: 'world' });
    expect(broker.proxyCalls.map((call) => call.url)).toEqual([
      `${BASE}/gateway/v1/hello?x=1`,
      `${BASE}/gateway/v1/bare`,
    ]);
    const [first] = broker.proxyCalls;
    expect(bearer(first)).toBe('Bearer token-1');
    expect(first?.headers.get('x-trace')).toBe('abc');
    expect(first?.init.method).toBe('PUT');
    expect(first?.init.body).toBe('payload');
    expect(headers.get('authorization')).toBe('Basic caller');
    expect(broker.tokenCalls).toHaveLength(1);
    c.clear();
  });

  it('when the page gives a trace context, then each call carries its traceparent and tracestate unless the call set its own', async () => {
    const broker = fakeBroker();
    const contexts = [
      { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'vendor=1' },
      { traceparent: '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01' },
    ];
    let calls = 0;
    const { client: c } = client(broker, { autoRefresh: false, traceContext: () => contexts[calls++] });

    await c.fetch('/a');
    await c.fetch('/b');
    await c.fetch('/c', {
      headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' },
    });
    await c.fetch('/d');

    const sent = broker.proxyCalls.map((call) => [
      call.headers.get('traceparent'),
      call.headers.get('tracestate'),
    ]);
    expect(sent).toEqual([
      [contexts[0]?.traceparent, 'vendor=1'],
      [contexts[1]?.traceparent, null],
      ['00-11111111111111111111111111111111-2222222222222222-01', null],
      [null, null],
    ]);
    // Without the option nothing is added.
    const plain = fakeBroker();
    await client(plain, { autoRefresh: false }).client.fetch('/e');
    expect(plain.proxyCalls[0]?.headers.has('traceparent')).toBe(false);
  });

  it('when headers come as a plain object, then they are kept next to the token', async () => {
    const broker = fakeBroker();
    const { client: c } = client(broker, { autoRefresh: false });

    await c.fetch('/x', { headers: { accept: 'application/json' } });

    expect(broker.proxyCalls[0]?.headers.get('accept')).toBe('application/json');
    expect(bearer(broker.proxyCalls[0])).toBe('Bearer token-1');
  });

  it.each(['invalid_client_token', 'ip_mismatch', 'token_revoked'])(
    'when the broker refuses the token with %s, then a new token is fetched and the call retried once',
    async (code) => {
      const broker = fakeBroker({
        proxy: (_, n) => (n === 1 ? problem(code, code === 'ip_mismatch' ? 403 : 401) : undefined),
      });
      const { client: c, events } = client(broker, { autoRefresh: false });

      const response = await c.fetch('/hello', { method: 'POST', body: '{"a":1}' });

      expect(response.status).toBe(200);
      expect(broker.tokenCalls).toHaveLength(2);
      expect(broker.proxyCalls.map(bearer)).toEqual(['Bearer token-1', 'Bearer token-2']);
      expect(broker.proxyCalls[1]?.init.body).toBe('{"a":1}');
      expect(events).toContainEqual({ type: 'retry', code, url: `${BASE}/api/proxy/hello` });
      expect(events.at(-1)).toMatchObject({ type: 'token', reason: 'rejected' });
    },
  );

  it('when the proxy answers 429 token_budget_exhausted, then a new token is fetched and the call retried once', async () => {
    const broker = fakeBroker({
      proxy: (_, n) => (n === 1 ? problem('token_budget_exhausted', 429) : undefined),
    });
    const { client: c, events } = client(broker, { autoRefresh: false });

    const response = await c.fetch('/hello', { method: 'POST', body: '{"a":1}' });

    expect(response.status).toBe(200);
    expect(broker.tokenCalls).toHaveLength(2);
    expect(broker.proxyCalls.map(bearer)).toEqual(['Bearer token-1', 'Bearer token-2']);
    expect(broker.proxyCalls[1]?.init.body).toBe('{"a":1}');
    expect(events).toContainEqual({
      type: 'retry',
      code: 'token_budget_exhausted',
      url: `${BASE}/api/proxy/hello`,
    });
    expect(c.tokenInfo()?.token).toBe('token-2');
  });

  it('when the new token is over its budget too, then the 429 reaches the caller and the next call starts with a new token', async () => {
    const broker = fakeBroker({
      proxy: (_, n) => (n <= 2 ? problem('token_budget_exhausted', 429) : undefined),
    });
    const { client: c } = client(broker, { autoRefresh: false });

    const response = await c.fetch('/hello');

    expect(response.status).toBe(429);
    expect(await response.json()).toMatchObject({ code: 'token_budget_exhausted' });
    expect(broker.proxyCalls).toHaveLength(2);
    expect((await c.fetch('/again')).status).toBe(200);
    expect(bearer(broker.proxyCalls[2])).toBe('Bearer token-3');
  });

  it('when the retried call is refused again, then the refusal reaches the caller and nothing more is sent', async () => {
    const broker = fakeBroker({ proxy: () => problem('invalid_client_token', 401) });
    const { client: c } = client(broker, { autoRefresh: false });

    const response = await c.fetch('/hello');

    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: 'invalid_client_token' });
    expect(broker.proxyCalls).toHaveLength(2);
    expect(broker.tokenCalls).toHaveLength(2);

    await c.fetch('/again');
    expect(bearer(broker.proxyCalls[2])).toBe('Bearer token-3');
  });

  it('when the broker answers origin_mismatch, then the answer reaches the caller without a retry', async () => {
    const broker = fakeBroker({ proxy: () => problem('origin_mismatch', 403) });
    const { client: c } = client(broker, { autoRefresh: false });

    const response = await c.fetch('/hello');

    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ code: 'origin_mismatch' });
    expect(broker.proxyCalls).toHaveLength(1);
    expect(broker.tokenCalls).toHaveLength(1);
    expect(c.tokenInfo()?.token).toBe('token-1');
  });

  it('when the upstream API itself answers 401 with a code in plain JSON, then it passes through untouched', async () => {
    const broker = fakeBroker({ proxy: () => json({ code: 'invalid_client_token' }, 401) });
    const { client: c } = client(broker, { autoRefresh: false });

    const response = await c.fetch('/hello');

    expect(response.status).toBe(401);
    expect(broker.proxyCalls).toHaveLength(1);
    expect(c.tokenInfo()?.token).toBe('token-1');
  });

  it('when the body is a stream, then a refused token is dropped but the call is not retried', async () => {
    const broker = fakeBroker({ proxy: (_, n) => (n === 1 ? problem('token_revoked', 401) : undefined) });
    const { client: c } = client(broker, { autoRefresh: false });
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('chunk'));
        controller.close();
      },
    });

    const response = await c.fetch('/upload', { method: 'POST', body, duplex: 'half' } as RequestInit);

    expect(response.status).toBe(401);
    expect(broker.proxyCalls).toHaveLength(1);
    expect(c.tokenInfo()).toBeUndefined();
    await c.fetch('/next');
    expect(bearer(broker.proxyCalls[1])).toBe('Bearer token-2');
  });

  it.each([
    ['URLSearchParams', () => new URLSearchParams({ a: '1' })],
    ['Blob', () => new Blob(['x'])],
    ['FormData', () => new FormData()],
    ['Uint8Array', () => new Uint8Array([1, 2])],
    ['ArrayBuffer', () => new ArrayBuffer(4)],
  ])('when the body is a %s, then the refused call is retried with the same body', async (_, make) => {
    const broker = fakeBroker({
      proxy: (_, n) => (n === 1 ? problem('invalid_client_token', 401) : undefined),
    });
    const { client: c } = client(broker, { autoRefresh: false });
    const body = make();

    await c.fetch('/upload', { method: 'POST', body });

    expect(broker.proxyCalls).toHaveLength(2);
    expect(broker.proxyCalls[1]?.init.body).toBe(body);
  });

  it('when five concurrent calls are refused, then one new token serves all their retries', async () => {
    const broker = fakeBroker({
      proxy: (call) => (bearer(call) === 'Bearer token-1' ? problem('invalid_client_token', 401) : undefined),
    });
    const { client: c } = client(broker, { autoRefresh: false });

    const responses = await Promise.all(Array.from({ length: 5 }, () => c.fetch('/hello')));

    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
    expect(broker.tokenCalls).toHaveLength(2);
  });

  it.each([
    ['rate_limited', 429],
    ['call_quota_exhausted', 429],
    ['upstream_unavailable', 503],
  ])(
    'when the proxy answers %s, then the caller gets it at once and the token is kept',
    async (code, status) => {
      const broker = fakeBroker({ proxy: () => problem(code, status, { 'retry-after': '30' }) });
      const { client: c } = client(broker, { autoRefresh: false });

      const response = await c.fetch('/hello');

      expect(response.status).toBe(status);
      expect(response.headers.get('retry-after')).toBe('30');
      expect(broker.proxyCalls).toHaveLength(1);
      expect(broker.tokenCalls).toHaveLength(1);
      expect(c.tokenInfo()?.token).toBe('token-1');
    },
  );
});

describe('storage', () => {
  const touched: string[] = [];
  const names = ['localStorage', 'sessionStorage', 'indexedDB', 'caches', 'document'];

  afterEach(() => {
    for (const name of names) Reflect.deleteProperty(globalThis, name);
    touched.length = 0;
  });

  it('when tokens are fetched, renewed, refused and cleared, then no browser storage is touched', async () => {
    for (const name of names) {
      Object.defineProperty(globalThis, name, {
        configurable: true,
        get() {
          touched.push(name);
          throw new Error(`${name} must not be used`);
        },
      });
    }
    const clock = createManualClock();
    const broker = fakeBroker({
      expiresIn: 5,
      proxy: (_, n) => (n === 1 ? problem('invalid_client_token', 401) : undefined),
    });
    const { client: c } = client(broker, { now: clock.now, autoRefresh: false });

    await c.getToken();
    await c.fetch('/hello', { method: 'POST', body: 'x' });
    clock.advance(5_000);
    await c.getToken();
    await c.refresh();
    c.clear();

    expect(broker.tokenCalls).toHaveLength(4);
    expect(touched).toEqual([]);
  });
});

describe('attestation', () => {
  it('when the broker asks for a proof, then the attestation option makes one, and every later token request carries a fresh one', async () => {
    const broker = fakeBroker({
      token: (n) => (n === 1 ? problem('attestation_required', 401) : undefined),
    });
    let made = 0;
    const { client: instance } = client(broker, {
      autoRefresh: false,
      attestation: async () => {
        made += 1;
        return `proof-${made}`;
      },
    });
    expect(await instance.getToken()).toBe('token-1');
    expect(await instance.refresh()).toBe('token-2');
    expect(broker.tokenCalls.map((call) => call.headers.get('attestation'))).toEqual([
      null,
      'proof-1',
      'proof-2',
    ]);
  });

  it('when a fresh proof is refused too, then the refusal reaches the caller after one retry', async () => {
    const broker = fakeBroker({ token: () => problem('attestation_failed', 401) });
    const { client: instance } = client(broker, { autoRefresh: false, attestation: async () => 'proof' });
    await expect(instance.getToken()).rejects.toMatchObject({ code: 'attestation_failed', status: 401 });
    expect(broker.tokenCalls).toHaveLength(2);
  });

  it('when no attestation option is given and the challenge route answers an error, then that error reaches the caller', async () => {
    const broker = fakeBroker({ token: () => problem('attestation_required', 401) });
    const fetch = vi.fn(async (url: string, init: RequestInit) =>
      url.endsWith('/challenge') ? problem('rate_limited', 429) : broker.fetch(url, init),
    );
    const instance = createBrokerClient({ baseUrl: BASE, fetch, autoRefresh: false });
    await expect(instance.getToken()).rejects.toBeInstanceOf(BrokerClientError);
    await expect(instance.getToken()).rejects.toMatchObject({ code: 'rate_limited' });
    expect(fetch.mock.calls.filter(([url]) => url === `${TOKEN_URL}/challenge`)[0]?.[1]).toMatchObject({
      method: 'POST',
    });
  });
});
