import { type IncomingMessage, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startApiServer } from '../support/apiServers.js';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';
import { waitFor } from '../support/waiting.js';

/**
 * Server-sent events through `/api/proxy/*`: each event is relayed as it arrives, a stream outlives
 * UPSTREAM_API_TIMEOUT_MS (1 s here) and UPSTREAM_TIMEOUT_MS (400 ms, the gap limit of other answers), a
 * silent one is ended after UPSTREAM_STREAM_IDLE_TIMEOUT_MS (1 s), and a client that leaves ends it at once.
 */

const eventCount = 20;
const intervalMs = 90;

/** `/events`: `count` events `gapMs` apart, each carrying when it was written; `/silent`: one, then nothing. */
function startEventApi(): Promise<ApiServer> {
  return startApiServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://api.local');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    const count = Number(url.searchParams.get('count') ?? eventCount);
    const gapMs = Number(url.searchParams.get('gap') ?? intervalMs);
    const firstAfterMs = Number(url.searchParams.get('first') ?? gapMs);
    let sent = 0;
    const send = () => {
      res.write(`id: ${sent}\ndata: ${JSON.stringify({ n: sent, at: performance.now() })}\n\n`);
      sent += 1;
      if (url.pathname === '/silent') return;
      if (sent === count) res.end();
      else timer = setTimeout(send, gapMs);
    };
    let timer = setTimeout(send, firstAfterMs);
    res.on('close', () => clearTimeout(timer));
  });
}

let api: ApiServer;
let broker: BrokerHandle<'fake'>;
let token: string;

beforeAll(async () => {
  api = await startEventApi();
  broker = await startBroker({
    upstream: 'fake',
    env: {
      UPSTREAM_API_URL: api.origin,
      UPSTREAM_API_TIMEOUT_MS: '1000',
      UPSTREAM_STREAM_IDLE_TIMEOUT_MS: '1000',
    },
  });
  token = await broker.clientToken();
});

afterAll(async () => {
  await broker.close();
  await api.close();
});

interface Received {
  res: IncomingMessage;
  headersAt: number;
  /** Each event's data, with when it arrived here. */
  events: { n: number; at: number; arrived: number }[];
  ended: Promise<'end' | 'aborted'>;
}

/** Opens the stream as EventSource would (Accept: text/event-stream) and parses events as bytes arrive. */
function openStream(path: string): Promise<Received> {
  const sent = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${broker.url}/api/proxy${path}`, {
      headers: { origin: appOrigin, authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const received: Received = {
        res,
        headersAt: performance.now() - sent,
        events: [],
        ended: new Promise((settle) => {
          res.on('end', () => settle('end'));
          res.on('aborted', () => settle('aborted'));
          res.on('error', () => settle('aborted'));
        }),
      };
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const arrived = performance.now();
        buffer += chunk;
        let end = buffer.indexOf('\n\n');
        while (end !== -1) {
          const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
          if (data) received.events.push({ ...(JSON.parse(data) as { n: number; at: number }), arrived });
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf('\n\n');
        }
      });
      resolve(received);
    });
    req.end();
  });
}

const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((values.length * p) / 100))] ?? 0;

describe('server-sent events through the proxy', () => {
  it('when the API sends events for longer than UPSTREAM_API_TIMEOUT_MS, then each arrives as it was sent and the stream ends cleanly', async () => {
    const stream = await openStream('/events');
    expect(await stream.ended).toBe('end');
    expect(stream.res.statusCode).toBe(200);
    expect(stream.res.headers['content-type']).toBe('text/event-stream');
    expect(stream.res.headers['x-accel-buffering']).toBe('no');
    expect(stream.events.map((event) => event.n)).toEqual(Array.from({ length: eventCount }, (_, n) => n));
    // 20 events 90 ms apart: the stream lived past the 1 s deadline of other answers.
    expect(stream.events.at(-1)?.arrived ?? 0).toBeGreaterThan((stream.events[0]?.arrived ?? 0) + 1_000);
    const delays = stream.events.map((event) => event.arrived - event.at);
    const median = percentile(delays, 50);
    const p99 = percentile(delays, 99);
    console.info(
      `SSE delay added per event through the broker: median ${median.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`,
    );
    // Held back until a buffer filled, events would arrive together, hundreds of ms late.
    expect(median).toBeLessThan(30);
    expect(p99).toBeLessThan(intervalMs);
    expect(api.requests.at(-1)?.headers['accept-encoding']).toBe('identity');
  });

  it('when the first event comes later than UPSTREAM_TIMEOUT_MS and events are further apart, then the headers come at once and the stream lives on', async () => {
    const stream = await openStream('/events?count=3&gap=600&first=700');
    expect(stream.headersAt).toBeLessThan(500);
    expect(await stream.ended).toBe('end');
    expect(stream.events.map((event) => event.n)).toEqual([0, 1, 2]);
  });

  it('when the API stays silent past UPSTREAM_STREAM_IDLE_TIMEOUT_MS, then the broker ends the stream and closes the API request', async () => {
    const started = performance.now();
    const stream = await openStream('/silent?first=50');
    expect(await stream.ended).toBe('end');
    const ms = performance.now() - started;
    expect(stream.events).toHaveLength(1);
    expect(ms).toBeGreaterThanOrEqual(1_000);
    expect(ms).toBeLessThan(2_500);
    await expect(api.requests.at(-1)?.done).resolves.toBe('closed');
  });

  it('when the client goes away mid-stream, then the API request is cancelled at once', async () => {
    const stream = await openStream('/events?count=1000&gap=50');
    await waitFor(() => stream.events.length >= 2);
    const record = api.requests.at(-1);
    const left = performance.now();
    stream.res.destroy();
    await expect(record?.done).resolves.toBe('closed');
    expect(performance.now() - left).toBeLessThan(300);
  });

  it('when a client that does not ask for a stream gets a slow answer, then the usual deadline still applies', async () => {
    const started = performance.now();
    const answer = await new Promise<number>((resolve) => {
      const req = request(`${broker.url}/api/proxy/events?count=1000&gap=100`, {
        headers: { origin: appOrigin, authorization: `Bearer ${token}` },
      });
      req.on('response', (res) => {
        res.resume();
        res.on('close', () => resolve(performance.now() - started));
      });
      req.on('error', () => resolve(performance.now() - started));
      req.end();
    });
    expect(answer).toBeGreaterThanOrEqual(950);
    expect(answer).toBeLessThan(2_500);
  });
});
