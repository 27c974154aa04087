import { createServer } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { type BrokerProcess, startBrokerProcess } from '../support/brokerProcess.js';
import { registerSecret } from '../support/logs.js';

/** Issue #12, hardening: uploads that never finish, and one address holding many connections. */

const origin = 'https://app.example.com';
const idleMs = 400;

/** Opens a raw connection, writes `text`, and collects what comes back until the server closes. */
function rawExchange(
  port: number,
  text: string,
): { socket: Socket; answer: Promise<{ text: string; ms: number }> } {
  const started = performance.now();
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  const answer = new Promise<{ text: string; ms: number }>((resolve) => {
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () =>
      resolve({ text: Buffer.concat(chunks).toString('latin1'), ms: performance.now() - started }),
    );
  });
  socket.write(text);
  return { socket, answer };
}

describe('an upload that stalls', () => {
  let api: ApiServer;
  let broker: FakeUpstreamBroker;
  let token: string;
  let port: number;
  beforeAll(async () => {
    api = await startEchoApi();
    broker = await startBroker({
      upstream: 'fake',
      env: { UPSTREAM_API_URL: `${api.origin}/`, BODY_IDLE_TIMEOUT_MS: String(idleMs) },
    });
    port = Number(new URL(broker.url).port);
    const minted = await broker.request({ path: '/api/client-token', headers: { origin } });
    token = registerSecret('slow client token', (JSON.parse(minted.body) as { token: string }).token);
  });
  afterAll(async () => {
    await broker?.close();
    await api?.close();
  });

  it.each([
    ['a proxied upload with Content-Length', '/api/proxy/upload', 'content-length: 100000', 'x'.repeat(10)],
    ['a proxied chunked upload', '/api/proxy/upload', 'transfer-encoding: chunked', 'a\r\nxxxxxxxxxx\r\n'],
    ['a claim body', '/api/auth/claim', 'content-length: 500', '{"origin":'],
  ])(
    'when %s stops arriving, then 408 request_timeout within the idle bound and the connection closes',
    async (_, path, framing, start) => {
      const { answer } = rawExchange(
        port,
        [
          `POST ${path} HTTP/1.1`,
          `host: 127.0.0.1:${port}`,
          `origin: ${origin}`,
          `authorization: Bearer ${path.startsWith('/api/proxy') ? token : broker.apiKey}`,
          'content-type: application/json',
          framing,
          '',
          start,
        ].join('\r\n'),
      );
      const { text, ms } = await answer;
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(text).toMatch(/content-type: application\/problem\+json/i);
      expect(text).toContain('"code":"request_timeout"');
      expect(text).toContain(`the request body stalled for more than ${idleMs} ms`);
      expect(ms).toBeGreaterThanOrEqual(idleMs - 50);
      expect(ms).toBeLessThan(idleMs + 1_500);
    },
  );

  it('when a body trickles in with pauses shorter than the bound, then it is forwarded whole', async () => {
    const { socket, answer } = rawExchange(
      port,
      [
        'POST /api/proxy/upload HTTP/1.1',
        `host: 127.0.0.1:${port}`,
        `origin: ${origin}`,
        `authorization: Bearer ${token}`,
        'connection: close',
        'content-length: 6',
        '',
        'ab',
      ].join('\r\n'),
    );
    await new Promise((resolve) => setTimeout(resolve, idleMs / 2));
    socket.write('cd');
    await new Promise((resolve) => setTimeout(resolve, idleMs / 2));
    socket.write('ef');
    const { text } = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(text).toContain('"bodyBytes":6');
  });
});

describe('connections per address', () => {
  let broker: BrokerProcess;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    broker = await startBrokerProcess({ MAX_CONNECTIONS_PER_IP: '4' });
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await broker?.stop();
  });

  it('when one address opens more connections than MAX_CONNECTIONS_PER_IP, then the extra one gets 429 and is closed, and a freed slot is usable again', async () => {
    for (let i = 0; i < 4; i += 1) {
      const socket = connect(broker.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      sockets.push(socket);
    }
    const extra = rawExchange(broker.port, `GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
    const refused = await extra.answer;
    expect(refused.text).toMatch(/^HTTP\/1\.1 429 /);
    expect(refused.text).toContain('"code":"rate_limited"');

    sockets.shift()?.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const health = await fetch(`${broker.url}/healthz`, { headers: { connection: 'close' } });
    expect(health.status).toBe(200);
  });
});

describe('an upload the API reads slowly', () => {
  it('when the API pauses longer than the idle bound before reading a large body, then the upload is forwarded whole', async () => {
    // The broker, not the client, stops reading: that back-pressure is no stalled upload.
    const api = createServer((req, res) => {
      setTimeout(() => {
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        req.on('end', () => res.end(JSON.stringify({ bytes })));
      }, idleMs * 3);
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/`;
    try {
      const broker = await startBroker({
        upstream: 'fake',
        env: { UPSTREAM_API_URL: apiUrl, BODY_IDLE_TIMEOUT_MS: String(idleMs), UPSTREAM_TIMEOUT_MS: '10000' },
      });
      const token = registerSecret('slow API client token', await broker.clientToken(origin));
      const size = 4 * 1024 * 1024;
      const answer = await broker.request({
        method: 'POST',
        path: '/api/proxy/upload',
        headers: { origin, authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
        body: Buffer.alloc(size, 1),
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toEqual({ bytes: size });
    } finally {
      api.close();
    }
  });
});
