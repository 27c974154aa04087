import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sender, type WebSocket } from 'ws';
import { createManualClock } from '../../src/clock.js';
import { closeFrame } from '../../src/proxy/closeFrame.js';
import { closedPort } from '../support/apiServers.js';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';
import { startBrokerProcess } from '../support/brokerProcess.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { issueToken, startFakeTokenServer } from '../support/oauthServers.js';
import { call } from '../support/rawCall.js';
import { missing } from '../support/requires.js';
import { signingKeySet } from '../support/signingKeys.js';
import { type SocketApi, startSocketApi } from '../support/socketApi.js';
import { handshake, nextMessage, offerFor, openRawClient, openSocket } from '../support/socketClient.js';
import { sleep, waitFor } from '../support/waiting.js';

const noRedis = await missing('redis');

type SocketBroker = BrokerHandle<'fake', SocketApi>;

let api: SocketApi;
let broker: SocketBroker;

beforeAll(async () => {
  api = await startSocketApi({ select: (offered) => offered.find((item) => item === 'chat.v2') });
  broker = await startBroker({ upstream: 'fake', api, env: { TRUST_PROXY: 'loopback' } });
});

afterAll(async () => {
  await broker.close();
  await api.close();
});

const origin = { origin: appOrigin };
/** A masked text frame, as a page sends it. */
const textFrame = { fin: true, rsv1: false, opcode: 0x1, mask: true, readOnly: false };

/** Revokes a client token as a backend does (RFC 7009). */
async function revoke(on: { url: string; apiKey: string }, token: string) {
  const answer = await fetch(`${on.url}/api/client-token/revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${on.apiKey}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  expect(answer.status).toBe(200);
}

describe('WebSockets on /api/proxy/*', () => {
  it('when a page offers token-broker, its token and its own protocol, then the API gets only its protocol and the upstream credential, and messages echo unchanged', async () => {
    const token = await broker.clientToken();
    const seen = api.handshakes.length;
    const socket = await openSocket(
      broker.url,
      '/api/proxy/chat/room-1?since=5',
      offerFor(token, 'chat.v2'),
      origin,
    );
    expect(socket.protocol).toBe('chat.v2');
    const upstream = api.handshakes[seen];
    expect(upstream?.url).toBe('/chat/room-1?since=5');
    expect(upstream?.protocols).toEqual(['chat.v2']);
    expect(upstream?.headers.authorization).toBe(`Bearer ${broker.issued.at(-1)}`);
    expect(upstream?.headers.origin).toBeUndefined();
    expect(JSON.stringify(upstream?.headers)).not.toContain(token);

    socket.ws.send('hello');
    expect(await nextMessage(socket.ws)).toEqual({ data: Buffer.from('hello'), isBinary: false });
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe]);
    socket.ws.send(bytes);
    expect(await nextMessage(socket.ws)).toEqual({ data: bytes, isBinary: true });
    socket.ws.close(1000);
    expect((await socket.closed).code).toBe(1000);
  });

  it('when the API selects none of the page protocols, then the broker answers token-broker', async () => {
    const token = await broker.clientToken();
    const socket = await openSocket(broker.url, '/api/proxy/feed', offerFor(token, 'other.v1'), origin);
    expect(socket.protocol).toBe('token-broker');
    socket.ws.send('still relayed');
    expect((await nextMessage(socket.ws)).data.toString()).toBe('still relayed');
    socket.ws.close();
  });

  it('when either side closes, then the other side gets the same code and reason', async () => {
    const token = await broker.clientToken();
    const fromApi = await openSocket(broker.url, '/api/proxy/a', offerFor(token), origin);
    await waitFor(() => api.sockets.length > 0);
    (api.sockets.at(-1) as (typeof api.sockets)[number]).close(4000, 'bye');
    expect(await fromApi.closed).toMatchObject({ code: 4000, reason: 'bye' });

    const fromPage = await openSocket(broker.url, '/api/proxy/b', offerFor(token), origin);
    const closesBefore = api.closes.length;
    fromPage.ws.close(3001, 'done');
    await waitFor(() => api.closes.length > closesBefore);
    expect(api.closes.at(-1)).toEqual([3001, 'done']);
  });

  it('when the API goes away without a close frame, then the page gets 1014 (bad gateway)', async () => {
    const token = await broker.clientToken();
    const before = api.sockets.length;
    const socket = await openSocket(broker.url, '/api/proxy/c', offerFor(token), origin);
    await waitFor(() => api.sockets.length > before);
    api.sockets.at(-1)?.terminate();
    expect((await socket.closed).code).toBe(1014);
  });

  it('when the API stops reading, then the broker stops reading the page, and every message arrives in order once it reads again', async () => {
    const token = await broker.clientToken();
    const before = api.sockets.length;
    const socket = await openSocket(broker.url, '/api/proxy/bulk', offerFor(token), origin);
    await waitFor(() => api.sockets.length > before);
    const apiEnd = api.sockets.at(-1) as (typeof api.sockets)[number];
    apiEnd.pause();
    const chunk = 64 * 1024;
    const count = 256;
    for (let index = 0; index < count; index += 1) socket.ws.send(Buffer.alloc(chunk, index % 251));
    // 16 MiB sent: past the broker's 1 MiB and the kernel's buffers, the rest waits on the page's side.
    await sleep(300);
    expect(socket.ws.bufferedAmount).toBeGreaterThan(4 * 1024 * 1024);
    const echoed: Buffer[] = [];
    socket.ws.on('message', (data) => echoed.push(data as Buffer));
    apiEnd.resume();
    await waitFor(() => echoed.length === count, 15_000);
    expect(echoed.every((data, index) => data.length === chunk && data[0] === index % 251)).toBe(true);
    socket.ws.close();
  });

  it('when a handshake fails a check, then it is refused before any upgrade with the problem code in the body, and no secret in any answer', async () => {
    const token = await broker.clientToken();
    const good = offerFor(token).join(', ');
    const cases: [string, Record<string, string>, number, string, string?][] = [
      ['no protocol', { origin: appOrigin }, 401, 'invalid_client_token'],
      [
        'token-broker alone',
        { origin: appOrigin, 'sec-websocket-protocol': 'token-broker' },
        401,
        'invalid_client_token',
      ],
      [
        'a bearer without token-broker',
        { origin: appOrigin, 'sec-websocket-protocol': `token-broker.bearer.${token}` },
        400,
        'invalid_request',
      ],
      [
        'a space inside a name',
        { origin: appOrigin, 'sec-websocket-protocol': `${good}, chat v2` },
        400,
        'invalid_request',
      ],
      [
        'an empty element',
        { origin: appOrigin, 'sec-websocket-protocol': `${good},,chat` },
        400,
        'invalid_request',
      ],
      [
        'a protocol twice',
        { origin: appOrigin, 'sec-websocket-protocol': `${good}, chat, chat` },
        400,
        'invalid_request',
      ],
      [
        'two bearer tokens',
        { origin: appOrigin, 'sec-websocket-protocol': `${good}, token-broker.bearer.abc` },
        400,
        'invalid_request',
      ],
      [
        'a forged token',
        { origin: appOrigin, 'sec-websocket-protocol': 'token-broker, token-broker.bearer.e30.e30.e30' },
        401,
        'invalid_client_token',
      ],
      [
        'another origin',
        { origin: 'https://evil.example.net', 'sec-websocket-protocol': good },
        403,
        'origin_mismatch',
      ],
      ['no origin', { 'sec-websocket-protocol': good }, 403, 'origin_mismatch'],
      [
        'another address',
        { origin: appOrigin, 'sec-websocket-protocol': good, 'x-forwarded-for': '198.51.100.8' },
        403,
        'ip_mismatch',
      ],
      [
        'the token in the query',
        { origin: appOrigin, 'sec-websocket-protocol': good },
        400,
        'invalid_request',
        `/api/proxy/x?access_token=${token}`,
      ],
      [
        'a JWT in any query parameter',
        { origin: appOrigin, 'sec-websocket-protocol': good },
        400,
        'invalid_request',
        `/api/proxy/x?t=${token}`,
      ],
      [
        'an unsafe path',
        { origin: appOrigin, 'sec-websocket-protocol': good },
        400,
        'invalid_request',
        '/api/proxy/a/%2e%2e/admin',
      ],
      [
        'an old protocol version',
        { origin: appOrigin, 'sec-websocket-protocol': good, 'sec-websocket-version': '8' },
        400,
        'invalid_request',
      ],
    ];
    const handshakesBefore = api.handshakes.length;
    for (const [label, headers, status, code, path = '/api/proxy/x'] of cases) {
      const answer = await handshake(broker.url, path, headers);
      expect({ label, status: answer.status }).toEqual({ label, status });
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect({ label, code: JSON.parse(answer.body).code }).toEqual({ label, code });
      expectNoSecrets(answer.body, [...broker.secrets(), token], label);
    }
    const post = await handshake(
      broker.url,
      '/api/proxy/x',
      { origin: appOrigin, 'sec-websocket-protocol': good },
      'POST',
    );
    expect(post.status).toBe(405);
    expect(JSON.parse(post.body).code).toBe('method_not_allowed');
    // None of them reached the API.
    expect(api.handshakes.length).toBe(handshakesBefore);
  });

  it('when the token was revoked before the handshake, then it is refused with token_revoked', async () => {
    const token = await broker.clientToken();
    await revoke(broker, token);
    const answer = await handshake(broker.url, '/api/proxy/x', {
      origin: appOrigin,
      'sec-websocket-protocol': offerFor(token).join(', '),
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).code).toBe('token_revoked');
  });

  it('when the token is revoked while its socket is open, then the socket closes with 4403 within 1 s', async () => {
    const token = await broker.clientToken();
    const socket = await openSocket(broker.url, '/api/proxy/live', offerFor(token), origin);
    const closesBefore = api.closes.length;
    const started = performance.now();
    await revoke(broker, token);
    const closed = await socket.closed;
    expect(closed).toMatchObject({ code: 4403, reason: 'client token revoked' });
    expect(closed.at - started).toBeLessThan(1_000);
    // The API's side is closed too.
    await waitFor(() => api.closes.length > closesBefore && broker.broker.websockets.size() === 0);
  });

  it('when a line is logged for a socket, then it names the path but never the query, a token or a credential', () => {
    const lines = broker.logs.lines().filter((line) => String(line.msg).startsWith('websocket'));
    expect(
      lines.some((line) => line.msg === 'websocket opened' && line.upstreamPath === '/chat/room-1'),
    ).toBe(true);
    expect(
      lines.some((line) => line.msg === 'websocket closed' && line.code === 4403 && line.by === 'broker'),
    ).toBe(true);
    expectNoSecrets(JSON.stringify(broker.logs.lines()), broker.secrets(), 'log');
    expect(JSON.stringify(lines)).not.toContain('since=5');
  });
});

/** A socket through the broker, and the API's end of it. */
async function openPair(path: string) {
  const token = await broker.clientToken();
  const before = api.sockets.length;
  const page = await openSocket(broker.url, path, offerFor(token), origin);
  await waitFor(() => api.sockets.length > before);
  return { token, page, apiEnd: api.sockets[before] as WebSocket };
}

describe('What the relay passes through, frame by frame', () => {
  it('when a page sends a fragmented message with a ping between its fragments, then the API gets the message whole and the ping itself, and its pong reaches the page', async () => {
    const { page, apiEnd } = await openPair('/api/proxy/fragments');
    const pings: string[] = [];
    apiEnd.on('ping', (data) => pings.push(data.toString()));
    const pong = new Promise<Buffer>((resolve) => page.ws.once('pong', resolve));
    page.ws.send('first ', { fin: false });
    page.ws.ping('between');
    page.ws.send('second', { fin: true });
    expect(await nextMessage(page.ws)).toEqual({ data: Buffer.from('first second'), isBinary: false });
    expect((await pong).toString()).toBe('between');
    expect(pings).toEqual(['between']);
    page.ws.close();
  });

  it('when the API pings the page, then the page gets the ping and the API its pong', async () => {
    const { page, apiEnd } = await openPair('/api/proxy/pings');
    const ping = new Promise<Buffer>((resolve) => page.ws.once('ping', resolve));
    const pong = new Promise<Buffer>((resolve) => apiEnd.once('pong', resolve));
    apiEnd.ping('from the api');
    expect((await ping).toString()).toBe('from the api');
    expect((await pong).toString()).toBe('from the api');
    page.ws.close();
  });

  it('when a message needs a 64-bit length, then it echoes unchanged', async () => {
    const { page } = await openPair('/api/proxy/large');
    const bytes = randomBytes(70_001);
    page.ws.send(bytes);
    const echoed = await nextMessage(page.ws);
    expect(echoed.isBinary).toBe(true);
    expect(echoed.data.equals(bytes)).toBe(true);
    page.ws.close();
  });

  it('when a page sends a close frame and half-closes its socket, then what the API still sends and its close reach the page before the broker ends it', async () => {
    const token = await broker.clientToken();
    const raw = await openRawClient(broker.url, '/api/proxy/half', {
      ...origin,
      'sec-websocket-protocol': offerFor(token).join(', '),
    });
    const closesBefore = api.closes.length;
    raw.socket.write(Buffer.concat(Sender.frame(Buffer.from('last'), textFrame)));
    raw.socket.write(Buffer.concat(closeFrame(3002, 'half', true)));
    raw.socket.end();
    await raw.ended;
    // The API's frames as it wrote them: its echo of `last`, then its close with the page's code.
    expect(raw.received()).toEqual(
      Buffer.concat([
        Buffer.from([0x81, 4]),
        Buffer.from('last'),
        Buffer.from([0x88, 6, 3002 >> 8, 3002 & 0xff]),
        Buffer.from('half'),
      ]),
    );
    expect(api.closes.slice(closesBefore)).toEqual([[3002, 'half']]);
  });

  it('when the token is revoked while the page is in the middle of a frame, then the API gets no more of it and its connection ends, and the page gets 4403', async () => {
    const token = await broker.clientToken();
    const raw = await openRawClient(broker.url, '/api/proxy/cut', {
      ...origin,
      'sec-websocket-protocol': offerFor(token).join(', '),
    });
    const closesBefore = api.closes.length;
    // The first 16 bytes of a masked 1 MiB frame: the rest never comes.
    const [header] = Sender.frame(Buffer.alloc(1024 * 1024), { ...textFrame, opcode: 0x2, readOnly: true });
    await new Promise((resolve) => raw.socket.write((header as Buffer).subarray(0, 16), resolve));
    await revoke(broker, token);
    await raw.ended;
    expect(raw.received().equals(Buffer.concat(closeFrame(4403, 'client token revoked', false)))).toBe(true);
    await waitFor(() => api.closes.length > closesBefore);
    expect(api.closes.slice(closesBefore)).toEqual([[1006, '']]);
  });

  it('when the page stops reading, then the broker stops reading the API, and every message arrives in order once it reads again', async () => {
    const { page, apiEnd } = await openPair('/api/proxy/download');
    page.ws.pause();
    const chunk = 64 * 1024;
    const count = 256;
    for (let index = 0; index < count; index += 1) apiEnd.send(Buffer.alloc(chunk, index % 251));
    // 16 MiB sent: past the kernel's buffers, the rest waits on the API's side, not in the broker.
    await waitFor(() => apiEnd.bufferedAmount > 4 * 1024 * 1024);
    const echoed: Buffer[] = [];
    page.ws.on('message', (data) => echoed.push(data as Buffer));
    page.ws.resume();
    await waitFor(() => echoed.length === count, 15_000);
    expect(echoed.every((data, index) => data.length === chunk && data[0] === index % 251)).toBe(true);
    page.ws.close();
  });

  it('when the token is revoked while a frame is on its way, then the frame arrives whole before the close frame', async () => {
    const token = await broker.clientToken();
    const before = api.sockets.length;
    const raw = await openRawClient(broker.url, '/api/proxy/midframe', {
      ...origin,
      'sec-websocket-protocol': offerFor(token).join(', '),
    });
    await waitFor(() => api.sockets.length > before);
    // The page stops reading after the frame's first bytes: the broker is held in the middle of it.
    const started = new Promise<void>((resolve) =>
      raw.socket.once('data', () => {
        raw.socket.pause();
        resolve();
      }),
    );
    // Small enough to pass within the broker's 900 ms wait on a loaded machine.
    const payload = Buffer.alloc(8 * 1024 * 1024, 7);
    (api.sockets[before] as WebSocket).send(payload);
    await started;
    await revoke(broker, token);
    raw.socket.resume();
    await raw.ended;
    const expected = Buffer.concat([
      ...Sender.frame(payload, { ...textFrame, opcode: 0x2, mask: false, readOnly: true }),
      ...closeFrame(4403, 'client token revoked', false),
    ]);
    const received = raw.received();
    // Compared as bytes: a diff of 8 MiB would not be read anyway.
    expect(received.length).toBe(expected.length);
    expect(received.equals(expected)).toBe(true);
  });
});

describe('WebSocket limits and failures', () => {
  it('when a token holds PROXY_WEBSOCKETS_PER_TOKEN sockets, then one more is refused with 429 until one closes', async () => {
    const limited = await startBroker({ upstream: 'fake', api, env: { PROXY_WEBSOCKETS_PER_TOKEN: '2' } });
    const token = await limited.clientToken();
    const first = await openSocket(limited.url, '/api/proxy/1', offerFor(token), origin);
    await openSocket(limited.url, '/api/proxy/2', offerFor(token), origin);
    const third = await handshake(limited.url, '/api/proxy/3', {
      ...origin,
      'sec-websocket-protocol': offerFor(token).join(','),
    });
    expect(third.status).toBe(429);
    expect(JSON.parse(third.body)).toMatchObject({ code: 'rate_limited' });
    // Another token is not held back by this one.
    await openSocket(limited.url, '/api/proxy/other', offerFor(await limited.clientToken()), origin);
    first.ws.close();
    await first.closed;
    await waitFor(() => limited.broker.websockets.size() === 2);
    await openSocket(limited.url, '/api/proxy/4', offerFor(token), origin);
  });

  it('when sockets open and close, then token_broker_websockets_open counts those open on the replica', async () => {
    const proxy = await startBroker({ upstream: 'fake', api });
    try {
      const gauge = async () =>
        /^token_broker_websockets_open (\d+)$/m.exec((await proxy.request({ path: '/metrics' })).body)?.[1];
      expect(await gauge()).toBe('0');
      const token = await proxy.clientToken();
      const sockets = [
        await openSocket(proxy.url, '/api/proxy/one', offerFor(token), origin),
        await openSocket(proxy.url, '/api/proxy/two', offerFor(token), origin),
      ];
      expect(await gauge()).toBe('2');
      for (const socket of sockets) socket.ws.close();
      await waitFor(() => proxy.broker.websockets.size() === 0);
      expect(await gauge()).toBe('0');
    } finally {
      await proxy.close();
    }
  });

  it('when a token has spent CLIENT_TOKEN_MAX_CALLS, then its next handshake is refused with token_budget_exhausted', async () => {
    const budgeted = await startBroker({ upstream: 'fake', api, env: { CLIENT_TOKEN_MAX_CALLS: '1' } });
    const token = await budgeted.clientToken();
    const offer = { ...origin, 'sec-websocket-protocol': offerFor(token).join(',') };
    expect((await handshake(budgeted.url, '/api/proxy/1', offer)).status).toBe(101);
    const refused = await handshake(budgeted.url, '/api/proxy/2', offer);
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body).code).toBe('token_budget_exhausted');
  });

  it('when an address passes RATE_LIMIT_PROXY, then its next handshake is refused with 429 and Retry-After', async () => {
    const limited = await startBroker({ upstream: 'fake', api, env: { RATE_LIMIT_PROXY: '2/minute' } });
    const token = await limited.clientToken();
    const offer = { ...origin, 'sec-websocket-protocol': offerFor(token).join(',') };
    expect((await handshake(limited.url, '/api/proxy/1', offer)).status).toBe(101);
    expect((await handshake(limited.url, '/api/proxy/2', offer)).status).toBe(101);
    const refused = await handshake(limited.url, '/api/proxy/3', offer);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBeDefined();
    expect(JSON.parse(refused.body).code).toBe('rate_limited');
  });

  it('when the API refuses the handshake, then the page gets 502 websocket_refused naming its status', async () => {
    const refusing = await startSocketApi({ refuse: () => 403 });
    const proxy = await startBroker({ upstream: 'fake', api: refusing });
    const answer = await handshake(proxy.url, '/api/proxy/x', {
      ...origin,
      'sec-websocket-protocol': offerFor(await proxy.clientToken()).join(','),
    });
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({
      code: 'websocket_refused',
      detail: expect.stringContaining('403'),
    });
    await refusing.close();
  });

  it('when the API answers 401 to the handshake, then the upstream token is renewed and the handshake tried once more', async () => {
    let refused: string | undefined;
    const picky = await startSocketApi({
      refuse: ({ headers }) => {
        refused ??= headers.authorization;
        return headers.authorization === refused ? 401 : undefined;
      },
    });
    const proxy = await startBroker({ upstream: 'fake', api: picky });
    const socket = await openSocket(proxy.url, '/api/proxy/x', offerFor(await proxy.clientToken()), origin);
    expect(picky.handshakes.map(({ headers }) => headers.authorization)).toEqual(
      proxy.issued.map((issued) => `Bearer ${issued}`),
    );
    expect(proxy.issued).toHaveLength(2);
    socket.ws.close();
    await picky.close();
  });

  it('when no rule of UPSTREAM_ALLOW opens GET on the path, then the handshake is refused with 403 path_not_allowed before the API sees it, and a path a rule opens upgrades', async () => {
    const ruled = await startBroker({ upstream: 'fake', api, env: { UPSTREAM_ALLOW: 'GET /rooms/*' } });
    const offer = { ...origin, 'sec-websocket-protocol': offerFor(await ruled.clientToken()).join(',') };
    const handshakesBefore = api.handshakes.length;
    const refused = await handshake(ruled.url, '/api/proxy/admin/feed', offer);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({
      code: 'path_not_allowed',
      detail: 'GET /admin/feed is not allowed on this upstream (UPSTREAM_ALLOW)',
    });
    expect(api.handshakes.length).toBe(handshakesBefore);
    expect((await handshake(ruled.url, '/api/proxy/rooms/1', offer)).status).toBe(101);
    expect(api.handshakes.at(-1)?.url).toBe('/rooms/1');
    await ruled.close();
  });

  it("when the upstream has a static API key read from ?key=, then the handshake carries it there in place of the page's own, without Authorization", async () => {
    const apiKey = registerSecret('static API key', `sk-${randomBytes(18).toString('base64url')}`);
    const keyed = await startBroker({
      upstream: 'fake',
      api,
      env: {
        UPSTREAM_TOKEN_URL: '',
        UPSTREAM_CLIENT_ID: '',
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_API_KEY: apiKey,
        UPSTREAM_CREDENTIAL_IN: 'query:key',
      },
    });
    const socket = await openSocket(
      keyed.url,
      '/api/proxy/rooms/1?key=from-the-page&x=1',
      offerFor(await keyed.clientToken()),
      origin,
    );
    const seen = api.handshakes.at(-1);
    expect(seen?.url).toBe(`/rooms/1?x=1&key=${encodeURIComponent(apiKey)}`);
    expect(seen?.headers.authorization).toBeUndefined();
    expect(keyed.issued).toHaveLength(0);
    socket.ws.close();
    await keyed.close();
  });

  it('when the API refuses a static key in the handshake, then the page gets 502 websocket_refused after one try, and the refusal is logged as a configuration problem', async () => {
    const refusing = await startSocketApi({ refuse: () => 401 });
    const apiKey = registerSecret('static API key', `sk-${randomBytes(18).toString('base64url')}`);
    const keyed = await startBroker({
      upstream: 'fake',
      api: refusing,
      env: {
        UPSTREAM_TOKEN_URL: '',
        UPSTREAM_CLIENT_ID: '',
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_API_KEY: apiKey,
        UPSTREAM_CREDENTIAL_IN: 'header:X-Api-Key',
      },
    });
    const answer = await handshake(keyed.url, '/api/proxy/x', {
      ...origin,
      'sec-websocket-protocol': offerFor(await keyed.clientToken()).join(','),
    });
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body).code).toBe('websocket_refused');
    expect(refusing.handshakes.map(({ headers }) => headers['x-api-key'])).toEqual([apiKey]);
    expect(
      keyed.logs.lines().filter((line) => String(line.msg).startsWith('the API refused the static API key')),
    ).toHaveLength(1);
    await keyed.close();
    await refusing.close();
  });

  it('when the API cannot be reached, then the page gets 503 upstream_unavailable', async () => {
    const proxy = await startBroker({
      upstream: 'fake',
      env: { UPSTREAM_API_URL: `http://127.0.0.1:${await closedPort()}/` },
    });
    const answer = await handshake(proxy.url, '/api/proxy/x', {
      ...origin,
      'sec-websocket-protocol': offerFor(await proxy.clientToken()).join(','),
    });
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body).code).toBe('upstream_unavailable');
  });

  it('when the client token expires on the injected clock, then its socket closes with 4401 within 1 s', async () => {
    const clock = createManualClock(Date.now());
    const proxy = await startBroker({
      upstream: 'fake',
      api,
      clock,
      env: { CLIENT_TOKEN_TTL: '60', CLIENT_TOKEN_CLOCK_TOLERANCE: '5' },
    });
    const socket = await openSocket(proxy.url, '/api/proxy/x', offerFor(await proxy.clientToken()), origin);
    clock.advance(60_000);
    socket.ws.send('not yet');
    expect((await nextMessage(socket.ws)).data.toString()).toBe('not yet');
    const started = performance.now();
    clock.advance(5_000);
    const closed = await socket.closed;
    expect(closed).toMatchObject({ code: 4401, reason: 'client token expired' });
    expect(closed.at - started).toBeLessThan(1_000);
  });

  it('when a request upgrades to another protocol or path, then the app answers it as a plain request', async () => {
    const answer = await handshake(broker.url, '/healthz', { upgrade: 'h2c', connection: 'Upgrade' });
    expect(answer.status).toBe(200);
    const unknown = await handshake(broker.url, '/nowhere', origin);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body).code).toBe('not_found');
  });
});

describe.skipIf(noRedis)('WebSockets across a fleet', () => {
  it('when a token is revoked on another replica, then its socket on this one closes with 4403 within 1 s', async () => {
    // Two replicas: one Redis and key prefix, one signing key set.
    const env = {
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_KEY_PREFIX: `tb-ws-${randomBytes(6).toString('hex')}:`,
      CACHE_ENCRYPTION_KEY: registerSecret('cache key', randomBytes(32).toString('base64')),
      SIGNING_KEYS: await signingKeySet(),
    };
    const here = await startBroker({ upstream: 'fake', api, env });
    const there = await startBroker({ upstream: 'fake', api, env });
    const token = await here.clientToken();
    const socket = await openSocket(here.url, '/api/proxy/fleet', offerFor(token), origin);
    socket.ws.send('before');
    expect((await nextMessage(socket.ws)).data.toString()).toBe('before');
    const started = performance.now();
    await revoke(there, token);
    const closed = await socket.closed;
    expect(closed.code).toBe(4403);
    expect(closed.at - started).toBeLessThan(1_000);
    // And the token opens no new socket on either replica.
    for (const replica of [here, there]) {
      const again = await handshake(replica.url, '/api/proxy/fleet', {
        ...origin,
        'sec-websocket-protocol': offerFor(token).join(','),
      });
      expect(JSON.parse(again.body).code).toBe('token_revoked');
    }
  });
});

describe('WebSockets and MAX_CONNECTIONS_PER_IP (main.ts)', () => {
  it('when an address holds MAX_CONNECTIONS_PER_IP WebSockets, then its next connection gets 429, a closed socket frees its place, and SIGTERM closes the rest with 1001', async () => {
    const upstream = await startFakeTokenServer(issueToken([]));
    const broker = await startBrokerProcess({
      MAX_CONNECTIONS_PER_IP: '2',
      ALLOWED_ORIGINS: appOrigin,
      SIGNING_KEYS: await signingKeySet(),
      UPSTREAM_TOKEN_URL: upstream.tokenUrl,
      UPSTREAM_CLIENT_ID: 'ws-client',
      UPSTREAM_CLIENT_SECRET: registerSecret('upstream client secret', randomBytes(24).toString('base64url')),
      UPSTREAM_API_URL: `${api.origin}/`,
    });
    try {
      // A connection of its own, closed after the answer.
      const minted = await call(broker.url, '/api/client-token', { method: 'POST', headers: origin });
      const token = registerSecret('client token', minted.json().token as string);
      const first = await openSocket(broker.url, '/api/proxy/1', offerFor(token), origin);
      const second = await openSocket(broker.url, '/api/proxy/2', offerFor(token), origin);
      const third = await handshake(broker.url, '/api/proxy/3', {
        ...origin,
        'sec-websocket-protocol': offerFor(token).join(','),
      });
      expect(third.status).toBe(429);
      expect(JSON.parse(third.body).code).toBe('rate_limited');
      first.ws.close();
      await first.closed;
      // The broker's end closes once the close handshake is over.
      await sleep(200);
      const freed = await handshake(broker.url, '/api/proxy/4', {
        ...origin,
        'sec-websocket-protocol': offerFor(token).join(','),
      });
      expect(freed.status).toBe(101);

      // SIGTERM: an open socket is told the broker is going away, and the process still exits.
      second.ws.close();
      await second.closed;
      await sleep(200);
      const open = await openSocket(broker.url, '/api/proxy/5', offerFor(token), origin);
      await broker.stop();
      expect(await open.closed).toMatchObject({ code: 1001, reason: 'broker shutting down' });
    } finally {
      await broker.stop();
      await upstream.close();
    }
  });
});
