import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoApi, startDemoApi } from '../../src/dev/demoApi.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { type LaunchedChromium, launchChromium } from '../support/chromium.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { call } from '../support/rawCall.js';
import { missing } from '../support/requires.js';
import { waitFor } from '../support/waiting.js';

const noChromium = await missing('chromium');

/** What the origin pages record of the helper's events (tokens included, to count distinct ones). */
interface PageEvent {
  type: string;
  reason?: string;
  code?: string;
  token?: string;
}

declare global {
  interface Window {
    ready?: boolean;
    events: PageEvent[];
    client: import('../../src/browser/client.js').BrokerClient;
  }
}

/**
 * A web app's page: it imports the broker's `/client.js` from the broker named in `?broker=` and exposes a
 * client on `window`, recording the helper's events.
 */
const originPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>web app</title><link rel="icon" href="data:,"></head>
<body><script type="module">
const broker = new URLSearchParams(location.search).get('broker');
const { createBrokerClient } = await import(broker + '/client.js');
window.events = [];
window.client = createBrokerClient({
  baseUrl: broker,
  onEvent: (event) =>
    window.events.push({ type: event.type, reason: event.reason, code: event.code, token: event.info?.token }),
});
window.ready = true;
</script></body></html>`;

interface OriginServer {
  origin: string;
  close(): Promise<void>;
}

async function startOriginServer(): Promise<OriginServer> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(originPage);
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

let auth: TestAuthServer;
let demoApi: DemoApi;
/** Allowed. */
let pageA: OriginServer;
/** Not allowed. */
let pageB: OriginServer;
/** Allowed too: another web app of the same deployment. */
let pageC: OriginServer;
let broker: OidcBroker;
let shortLived: OidcBroker;
let context: BrowserContext;
let browser: LaunchedChromium;

beforeAll(async () => {
  const launching = launchChromium();
  auth = await startTestAuthServer();
  demoApi = await startDemoApi({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.resource });
  [pageA, pageB, pageC] = await Promise.all([startOriginServer(), startOriginServer(), startOriginServer()]);
  const env = { UPSTREAM_API_URL: demoApi.url };
  broker = await startBroker({
    upstream: auth,
    logLevel: 'debug',
    demo: true,
    env,
    // The demo page is served by the broker itself, so its own origin is allowed as in dev mode.
    envFor: (url) => ({ ALLOWED_ORIGINS: `${pageA.origin},${pageC.origin},${url}` }),
  });
  shortLived = await startBroker({
    upstream: auth,
    logLevel: 'debug',
    env: { ...env, ALLOWED_ORIGINS: pageA.origin, CLIENT_TOKEN_TTL: '3' },
  });
  browser = await launching;
  context = browser.context;
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([broker?.close(), shortLived?.close()]);
  await Promise.all([pageA, pageB, pageC, demoApi].map((server) => server?.close()));
  await auth?.close();
});

/** A fresh tab on `origin`'s page, with the helper loaded from `target` and ready. */
async function openPage(origin: string, target: OidcBroker = broker): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${origin}/?broker=${encodeURIComponent(target.url)}`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

const answersFrom = (target: OidcBroker, origin: string) =>
  target.answers.filter((answer) => answer.origin === origin);

describe.skipIf(noChromium)('the browser helper in Chromium', () => {
  it('when a page on an allowed origin imports /client.js, then it gets a token and calls the demo API through the proxy', async () => {
    const page = await openPage(pageA.origin);
    const result = await page.evaluate(async () => {
      const token = await window.client.getToken();
      const response = await window.client.fetch('/hello');
      return { token, status: response.status, body: await response.json() };
    });
    registerSecret('browser client token', result.token);
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ message: 'Hello from the demo API', client: auth.clientId });
    expect(decodeJwt(result.token)).toMatchObject({ origin: pageA.origin, ip: '127.0.0.1' });
    expect(answersFrom(broker, pageA.origin)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ method: 'POST', url: '/api/client-token', status: 200 }),
        expect.objectContaining({ method: 'GET', url: '/api/proxy/hello', status: 200 }),
      ]),
    );
    await page.close();
  });

  it('when a page on a refused origin asks for a token, then it reads the 403 origin_not_allowed of the broker and why', async () => {
    const page = await openPage(pageB.origin);
    const outcome = await page.evaluate(() =>
      window.client.getToken().then(
        () => ({ code: 'got a token', detail: '' }),
        (error: { code: string; detail?: string }) => ({ code: error.code, detail: error.detail }),
      ),
    );
    // The refusal is readable across origins (it holds no secret), so the page can show the real reason.
    expect(outcome).toEqual({
      code: 'origin_not_allowed',
      detail: `${pageB.origin} is not in ALLOWED_ORIGINS`,
    });
    // The preflight was let through; the request itself was refused, and no token was minted.
    expect(answersFrom(broker, pageB.origin).filter((answer) => answer.url.startsWith('/api/'))).toEqual([
      expect.objectContaining({
        method: 'POST',
        url: '/api/client-token',
        status: 403,
        code: 'origin_not_allowed',
      }),
    ]);
    await page.close();
  });

  it('when a token minted for A is used by a script on another origin, then the browser-set Origin gets it refused', async () => {
    const pageOfA = await openPage(pageA.origin);
    const stolen = registerSecret(
      'stolen client token',
      await pageOfA.evaluate(() => window.client.getToken()),
    );
    const useStolen = (token: string) =>
      fetch(new URL('/api/proxy/hello', new URLSearchParams(location.search).get('broker') ?? '').href, {
        headers: { authorization: `Bearer ${token}` },
      }).then(
        async (response) => ({ status: response.status, body: await response.json() }),
        (error: Error) => ({ status: 0, body: { error: error.name } }),
      );

    // An allowed sibling app: the preflight passes, the call itself is refused, and the page can read why.
    const pageOfC = await openPage(pageC.origin);
    const fromC = await pageOfC.evaluate(useStolen, stolen);
    expect(fromC).toEqual({ status: 403, body: expect.objectContaining({ code: 'origin_mismatch' }) });
    expect(answersFrom(broker, pageC.origin)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          method: 'GET',
          url: '/api/proxy/hello',
          status: 403,
          code: 'origin_mismatch',
        }),
      ]),
    );

    // A refused origin: the browser's preflight (without the token) is not allowed, so the token never travels.
    const pageOfB = await openPage(pageB.origin);
    const fromB = await pageOfB.evaluate(useStolen, stolen);
    expect(fromB).toEqual({ status: 0, body: { error: 'TypeError' } });
    const fromBAnswers = answersFrom(broker, pageB.origin).filter(
      (answer) => answer.url === '/api/proxy/hello',
    );
    expect(fromBAnswers.map((answer) => answer.method)).toEqual(['OPTIONS']);
    expect(fromBAnswers[0]?.status).toBeGreaterThanOrEqual(400);
    await Promise.all([pageOfA.close(), pageOfB.close(), pageOfC.close()]);
  });

  it('when tokens live 3 s, then 10 s of calls every 250 ms all succeed across renewals', async () => {
    const page = await openPage(pageA.origin, shortLived);
    const result = await page.evaluate(async () => {
      const statuses: number[] = [];
      const tokens = new Set<string>();
      // 40 calls 250 ms apart span at least 10 s however slow the machine is.
      for (let call = 0; call < 40; call++) {
        const response = await window.client.fetch('/hello');
        statuses.push(response.status);
        await response.body?.cancel();
        const token = window.client.tokenInfo()?.token;
        if (token) tokens.add(token);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      return { statuses, tokens: [...tokens], events: window.events };
    });
    for (const token of result.tokens) registerSecret('short-lived client token', token);
    expect(result.statuses.length).toBe(40);
    expect(result.statuses.every((status) => status === 200)).toBe(true);
    expect(result.tokens.length).toBeGreaterThanOrEqual(3);
    // Renewed ahead of expiry, never after a refusal.
    expect(result.events.filter((event) => event.type === 'retry')).toEqual([]);
    expect(result.events.filter((event) => event.reason === 'renewal').length).toBeGreaterThanOrEqual(2);
    const proxied = answersFrom(shortLived, pageA.origin).filter(
      (answer) => answer.method === 'GET' && answer.url === '/api/proxy/hello',
    );
    expect(proxied.length).toBe(result.statuses.length);
    expect(proxied.every((answer) => answer.status === 200)).toBe(true);
    await page.close();
    // 10 s of pauses plus 40 proxied calls and the renewals: on a loaded 2-core machine the calls alone
    // have taken 10 s more.
  }, 40_000);

  it('when the token is revoked, then the next call fetches a new token and still succeeds', async () => {
    const page = await openPage(pageA.origin);
    const revokedToken = registerSecret(
      'revoked client token',
      await page.evaluate(() => window.client.getToken()),
    );
    const revoke = await call(broker.url, '/api/client-token/revoke', {
      method: 'POST',
      headers: { authorization: `Bearer ${broker.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ token: revokedToken }),
    });
    expect(revoke.status).toBe(200);
    const result = await page.evaluate(async () => {
      const response = await window.client.fetch('/hello');
      return { status: response.status, token: window.client.tokenInfo()?.token, events: window.events };
    });
    expect(result.status).toBe(200);
    expect(result.token).toBeDefined();
    registerSecret('renewed client token', result.token ?? '');
    expect(result.token).not.toBe(revokedToken);
    expect(result.events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'retry', code: 'token_revoked' }),
        expect.objectContaining({ type: 'token', reason: 'rejected', token: result.token }),
      ]),
    );
    const proxied = answersFrom(broker, pageA.origin)
      .filter((answer) => answer.method === 'GET' && answer.url === '/api/proxy/hello')
      .slice(-2);
    expect(proxied.map((answer) => [answer.status, answer.code])).toEqual([
      [401, 'token_revoked'],
      [200, undefined],
    ]);
    await page.close();
  });
});

describe.skipIf(noChromium)('the demo page', () => {
  it('when the demo page loads, then it shows a token without console errors and its button calls the API', async () => {
    const page = await context.newPage();
    await page.setViewportSize({ width: 1200, height: 900 });
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('requestfailed', (request) => problems.push(`${request.url()} failed`));
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`${response.url()} answered ${response.status()}`);
    });

    await page.goto(`${broker.url}/`);
    await page.locator('#token-state', { hasText: 'valid' }).waitFor({ timeout: 5_000 });
    expect(await page.locator('#claim-origin').textContent()).toBe(broker.url);
    await page.locator('#call').click();
    await page.locator('#call-status', { hasText: 'HTTP 200' }).waitFor({ timeout: 5_000 });
    expect(await page.locator('#answer').textContent()).toContain('Hello from the demo API');
    await page.screenshot({ path: '/tmp/demo.png', fullPage: true });
    await waitFor(() => broker.answers.some((answer) => answer.url === '/api/proxy/hello'));
    expect(problems).toEqual([]);
    await page.close();
  });
});
