import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiBroker, startBroker } from '../support/broker.js';
import { type LaunchedChromium, launchChromium } from '../support/chromium.js';
import { ath, dpopEnv, makeProof, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';
import { missing } from '../support/requires.js';

const noChromium = await missing('chromium');

declare global {
  interface Window {
    ready?: boolean;
    client: import('../../src/browser/client.js').BrokerClient;
  }
}

/** A web app's page: imports the broker's `/client.js` (named in `?broker=`) and makes a DPoP client. */
const originPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>web app</title><link rel="icon" href="data:,"></head>
<body><script type="module">
const broker = new URLSearchParams(location.search).get('broker');
const { createBrokerClient } = await import(broker + '/client.js');
window.client = createBrokerClient({ baseUrl: broker, dpop: true });
window.ready = true;
</script></body></html>`;

interface SeenRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
}

let pageServer: Server;
let pageOrigin: string;
let broker: ApiBroker;
let context: BrowserContext;
let browser: LaunchedChromium;

beforeAll(async () => {
  const launching = launchChromium();
  pageServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(originPage);
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
  broker = await startBroker({ api: 'verifying', env: { ...dpopEnv, ALLOWED_ORIGINS: pageOrigin } });
  browser = await launching;
  context = browser.context;
});

afterAll(async () => {
  await browser?.close();
  await broker?.close();
  pageServer?.closeAllConnections();
  await new Promise((resolve) => pageServer?.close(resolve));
});

/** A tab on the web app's page, with the helper loaded and every request to the broker recorded. */
async function openPage(): Promise<{ page: Page; seen: SeenRequest[] }> {
  const page = await context.newPage();
  const seen: SeenRequest[] = [];
  page.on('request', (request) => {
    if (request.url().startsWith(broker.url) && request.method() !== 'OPTIONS') {
      seen.push({ url: request.url(), method: request.method(), headers: request.headers() });
    }
  });
  await page.goto(`${pageOrigin}/?broker=${encodeURIComponent(broker.url)}`);
  await page.waitForFunction(() => window.ready === true);
  return { page, seen };
}

function callApi(page: Page) {
  return page.evaluate(async () => {
    const response = await window.client.fetch('hello?from=page');
    return { status: response.status, body: (await response.json()) as { hello?: string } };
  });
}

function replay(headers: Record<string, string>) {
  return fetch(`${broker.url}/api/proxy/hello`, { headers: { origin: pageOrigin, ...headers } });
}

async function refusal(response: Response): Promise<{ status: number; code: string; detail: string }> {
  const body = (await response.json()) as { code: string; detail: string };
  return { status: response.status, code: body.code, detail: body.detail };
}

describe.skipIf(noChromium)('DPoP in Chromium', () => {
  it('when the page calls the API with dpop: true, then it works, and the token copied out of the page is useless elsewhere', async () => {
    const { page, seen } = await openPage();
    expect(await callApi(page)).toEqual({
      status: 200,
      body: expect.objectContaining({ hello: 'from the API' }),
    });

    const info = await page.evaluate(() => {
      const current = window.client.tokenInfo();
      return { token: current?.token ?? '', tokenType: current?.tokenType };
    });
    const token = registerSecret('chromium dpop token', info.token);
    expect(info.tokenType).toBe('DPoP');
    const tokenRequest = seen.find((request) => request.url === `${broker.url}/api/client-token`);
    const proxyCall = seen.find((request) => request.url.startsWith(`${broker.url}/api/proxy/hello`));
    const pageJwk = decodeProtectedHeader(tokenRequest?.headers.dpop ?? '').jwk;
    expect(Object.keys(pageJwk ?? {}).sort()).toEqual(['crv', 'kty', 'x', 'y']);
    expect(proxyCall?.headers.authorization).toBe(`DPoP ${token}`);
    expect(decodeJwt(proxyCall?.headers.dpop ?? '')).toMatchObject({
      htm: 'GET',
      htu: `${broker.url}/api/proxy/hello`,
      ath: ath(token),
    });
    const apiCalls = broker.api.requests.length;

    // The thief holds the token but not the page's key: a proof from their own key is refused.
    const thief = await proofKey();
    const forged = await makeProof(thief, {
      htm: 'GET',
      htu: `${broker.url}/api/proxy/hello`,
      ath: ath(token),
    });
    const withOwnKey = await replay({ authorization: `DPoP ${token}`, dpop: forged });
    expect(await refusal(withOwnKey)).toEqual({
      status: 401,
      code: 'invalid_dpop_proof',
      detail: 'the proof was signed by another key than the token is bound to',
    });
    expect(withOwnKey.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/);

    // Without a proof, or as a plain bearer token, it is refused too.
    expect((await refusal(await replay({ authorization: `Bearer ${token}` }))).code).toBe(
      'invalid_dpop_proof',
    );
    expect((await refusal(await replay({ authorization: `DPoP ${token}` }))).code).toBe('invalid_dpop_proof');

    // A proof the page sent, captured on the wire and sent again, is a replay.
    const captured = await replay({ authorization: `DPoP ${token}`, dpop: proxyCall?.headers.dpop ?? '' });
    expect(await refusal(captured)).toEqual({
      status: 401,
      code: 'invalid_dpop_proof',
      detail: 'the proof has been used before',
    });
    expect(broker.api.requests.length).toBe(apiCalls);

    // The page itself carries on.
    expect((await callApi(page)).status).toBe(200);
    await page.close();
  });
});
