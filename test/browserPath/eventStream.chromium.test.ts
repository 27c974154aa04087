import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startApiServer } from '../support/apiServers.js';
import { type BrokerHandle, startBroker } from '../support/broker.js';
import { type LaunchedChromium, launchChromium } from '../support/chromium.js';

declare global {
  interface Window {
    streamed?: { status: number; type: string | null; events: { data: string; delayMs: number }[] };
  }
}

/**
 * A web app's page reads server-sent events through the broker with `client.js`: EventSource cannot send
 * the client token, so the page uses the helper's `fetch` with `Accept: text/event-stream` and reads the
 * body as it streams.
 */
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stream</title><link rel="icon" href="data:,"></head>
<body><script type="module">
const broker = new URLSearchParams(location.search).get('broker');
const { createBrokerClient } = await import(broker + '/client.js');
const client = createBrokerClient({ baseUrl: broker });
const response = await client.fetch('/ticks', { headers: { accept: 'text/event-stream' } });
const streamed = { status: response.status, type: response.headers.get('content-type'), events: [] };
const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
let buffer = '';
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  buffer += value;
  let end;
  while ((end = buffer.indexOf('\\n\\n')) !== -1) {
    const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
    buffer = buffer.slice(end + 2);
    if (data) streamed.events.push({ data, delayMs: Date.now() - JSON.parse(data).at });
  }
}
window.streamed = streamed;
</script></body></html>`;

let api: ApiServer;
let broker: BrokerHandle<'fake'>;
let pageServer: ReturnType<typeof createServer>;
let pageOrigin: string;
let browser: LaunchedChromium;

/** Five events 200 ms apart, each with the wall-clock time it was written (the page compares). */
function startTickApi(): Promise<ApiServer> {
  return startApiServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: ${JSON.stringify({ n, at: Date.now() })}\n\n`);
      n += 1;
      if (n === 5) {
        clearInterval(timer);
        res.end();
      }
    }, 200);
    res.on('close', () => clearInterval(timer));
  });
}

beforeAll(async () => {
  const launching = launchChromium();
  api = await startTickApi();
  pageServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page);
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
  broker = await startBroker({
    upstream: 'fake',
    env: { UPSTREAM_API_URL: api.origin, ALLOWED_ORIGINS: pageOrigin, UPSTREAM_API_TIMEOUT_MS: '1000' },
  });
  browser = await launching;
});

afterAll(async () => {
  await browser?.close();
  await broker?.close();
  pageServer?.closeAllConnections();
  await new Promise((resolve) => pageServer?.close(resolve));
  await api?.close();
});

describe('a page reads server-sent events through client.js', () => {
  it('when the API streams events for longer than UPSTREAM_API_TIMEOUT_MS, then the page reads each as it comes', async () => {
    const tab = await browser.context.newPage();
    await tab.goto(`${pageOrigin}/?broker=${encodeURIComponent(broker.url)}`);
    await tab.waitForFunction(() => window.streamed !== undefined, undefined, { timeout: 10_000 });
    const streamed = await tab.evaluate(() => window.streamed);
    expect(streamed?.status).toBe(200);
    expect(streamed?.type).toBe('text/event-stream');
    expect(streamed?.events.map((event) => (JSON.parse(event.data) as { n: number }).n)).toEqual([
      0, 1, 2, 3, 4,
    ]);
    // Each event reached the page well before the next was written (200 ms later): nothing held them back.
    for (const event of streamed?.events ?? []) expect(event.delayMs).toBeLessThan(150);
    expect(api.requests[0]?.headers['accept-encoding']).toBe('identity');
    await tab.close();
  });
});
