import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerHandle, startBroker } from '../support/broker.js';
import { type LaunchedChromium, launchChromium } from '../support/chromium.js';

/** What a page reports: the helper's attestation events, its time to a first token, and the API's answer. */
interface PageResult {
  events: { type: string; solver?: string; ms?: number }[];
  tokenMs: number;
  status: number;
  body: string;
}

declare global {
  interface Window {
    result?: PageResult | { error: string };
  }
}

/** A web app's page that uses `/client.js` and nothing more: no proof-of-work code of its own. */
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>web app</title><link rel="icon" href="data:,"></head>
<body><script type="module">
const broker = new URLSearchParams(location.search).get('broker');
const { createBrokerClient } = await import(broker + '/client.js');
const events = [];
const client = createBrokerClient({ baseUrl: broker, autoRefresh: false, onEvent: (event) => events.push({ type: event.type, solver: event.solver, ms: event.ms }) });
try {
  const started = performance.now();
  await client.getToken();
  const tokenMs = performance.now() - started;
  const answer = await client.fetch('/things');
  window.result = { events, tokenMs, status: answer.status, body: await answer.text() };
} catch (error) {
  window.result = { error: String(error) };
}
</script></body></html>`;

interface OriginServer {
  origin: string;
  close(): Promise<void>;
}

/** Serves the page, with `csp` as its Content-Security-Policy when given. */
async function startOriginServer(csp?: string): Promise<OriginServer> {
  const server = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      ...(csp ? { 'content-security-policy': csp } : {}),
    });
    res.end(page);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let plain: OriginServer;
let strict: OriginServer;
let broker: BrokerHandle<'fake', 'fixed'>;
let browser: LaunchedChromium;
let context: BrowserContext;

beforeAll(async () => {
  const launching = launchChromium();
  [plain, strict] = await Promise.all([
    startOriginServer(),
    // Workers refused: the helper must solve on the page's own thread.
    startOriginServer(
      "default-src 'self'; script-src 'self' 'unsafe-inline' http://127.0.0.1:*; connect-src http://127.0.0.1:*; worker-src 'none'",
    ),
  ]);
  // Default difficulty and cost: the time to a first token is the one a real page sees.
  broker = await startBroker({
    upstream: 'fake',
    api: 'fixed',
    env: { CLIENT_TOKEN_ATTESTATION: 'pow', ALLOWED_ORIGINS: `${plain.origin},${strict.origin}` },
  });
  browser = await launching;
  context = browser.context;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await broker?.close();
  await Promise.all([plain, strict].map((server) => server?.close()));
});

async function run(origin: string): Promise<PageResult> {
  const tab = await context.newPage();
  await tab.goto(`${origin}/?broker=${encodeURIComponent(broker.url)}`);
  await tab.waitForFunction(() => window.result !== undefined, undefined, { timeout: 60_000 });
  const result = await tab.evaluate(() => window.result);
  await tab.close();
  if (!result || 'error' in result) throw new Error(`the page failed: ${result?.error}`);
  return result;
}

describe('CLIENT_TOKEN_ATTESTATION=pow in Chromium', () => {
  it('when a page uses client.js and nothing more, then it solves the challenge in workers, gets a token and calls the API', async () => {
    const result = await run(plain.origin);
    expect(result.status).toBe(200);
    expect(JSON.parse(result.body)).toEqual({ ok: true });
    expect(result.events.filter((event) => event.type === 'attestation')).toEqual([
      { type: 'attestation', solver: 'worker', ms: expect.any(Number) },
    ]);
    console.log(`pow in Chromium, workers: first token after ${Math.round(result.tokenMs)} ms`);
    // Asked without a proof, refused, a challenge, then the token with its solution (after a CORS preflight).
    const exchanges = broker.answers.filter(
      (answer) =>
        answer.url.startsWith('/api/client-token') &&
        answer.origin === plain.origin &&
        answer.method === 'POST',
    );
    expect(exchanges.map((answer) => `${answer.url} ${answer.code ?? answer.status}`)).toEqual([
      '/api/client-token attestation_required',
      '/api/client-token/challenge 200',
      '/api/client-token 200',
    ]);
  }, 60_000);

  it('when the page forbids workers (CSP worker-src none), then it solves on its own thread and still gets a token', async () => {
    const result = await run(strict.origin);
    expect(result.status).toBe(200);
    expect(result.events.filter((event) => event.type === 'attestation')).toEqual([
      { type: 'attestation', solver: 'main', ms: expect.any(Number) },
    ]);
    console.log(`pow in Chromium, main thread: first token after ${Math.round(result.tokenMs)} ms`);
  }, 60_000);
});
