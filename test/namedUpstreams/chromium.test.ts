import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoApi, startDemoApi } from '../../src/dev/demoApi.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { type LaunchedChromium, launchChromium } from '../support/chromium.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { missing } from '../support/requires.js';
import { namedUpstreamsEnv } from './support.js';

const noChromium = await missing('chromium');

declare global {
  interface Window {
    upstreamsReady?: boolean;
    twoApis: import('../../src/browser/client.js').BrokerClient;
    makeClient: (
      options: import('../../src/browser/client.js').BrokerClientOptions,
    ) => import('../../src/browser/client.js').BrokerClient;
    tokenEvents: number;
  }
}

/** A web app's page that loads `/client.js` from the broker in `?broker=` and keeps one client. */
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>two APIs</title><link rel="icon" href="data:,"></head>
<body><script type="module">
const broker = new URLSearchParams(location.search).get('broker');
const { createBrokerClient } = await import(broker + '/client.js');
window.tokenEvents = 0;
window.twoApis = createBrokerClient({
  baseUrl: broker,
  onEvent: (event) => { if (event.type === 'token') window.tokenEvents += 1; },
});
window.makeClient = (options) => createBrokerClient({ baseUrl: broker, ...options });
window.upstreamsReady = true;
</script></body></html>`;

let uitpasAuth: TestAuthServer;
let entryAuth: TestAuthServer;
let uitpasApi: DemoApi;
let entryApi: DemoApi;
let pageServer: ReturnType<typeof createServer>;
let pageOrigin: string;
let broker: OidcBroker;
let browser: LaunchedChromium;

beforeAll(async () => {
  const launching = launchChromium();
  // Two authorization servers, each issuing for its own API (RFC 8707 resource, the token's `aud`).
  [uitpasAuth, entryAuth] = await Promise.all([
    startTestAuthServer({ resource: 'https://uitpas.token-broker.test/' }),
    startTestAuthServer({ resource: 'https://entry.token-broker.test/' }),
  ]);
  [uitpasApi, entryApi] = await Promise.all(
    [uitpasAuth, entryAuth].map((auth) =>
      startDemoApi({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.resource }),
    ),
  );
  pageServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page);
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
  const entryEnv = namedUpstreamsEnv(entryAuth, { entry: { API_URL: entryApi.url } });
  broker = await startBroker({
    env: {
      ...namedUpstreamsEnv(uitpasAuth, { uitpas: { API_URL: uitpasApi.url } }),
      ...Object.fromEntries(Object.entries(entryEnv).filter(([name]) => name.startsWith('UPSTREAM_ENTRY_'))),
      UPSTREAMS: 'uitpas,entry',
      ALLOWED_ORIGINS: pageOrigin,
    },
    upstream: uitpasAuth,
  });
  browser = await launching;
});

afterAll(async () => {
  await browser?.close();
  await broker?.close();
  pageServer?.closeAllConnections();
  await new Promise((resolve) => pageServer?.close(resolve));
  await Promise.all([uitpasApi?.close(), entryApi?.close(), entryAuth?.close(), uitpasAuth?.close()]);
});

describe.skipIf(noChromium)('one page calling two APIs through client.js in Chromium', () => {
  it('when a page calls uitpas and entry with one client, then each API accepts its own upstream token', async () => {
    const tab = await browser.context.newPage();
    await tab.goto(`${pageOrigin}/?broker=${encodeURIComponent(broker.url)}`);
    await tab.waitForFunction(() => window.upstreamsReady === true);
    const result = await tab.evaluate(async () => {
      const [uitpas, entry] = await Promise.all([
        window.twoApis.upstream('uitpas').fetch('/hello'),
        window.twoApis.upstream('entry').fetch('hello'),
      ]);
      return {
        uitpas: { status: uitpas.status, body: await uitpas.json() },
        entry: { status: entry.status, body: await entry.json() },
        token: await window.twoApis.getToken(),
        tokenEvents: window.tokenEvents,
      };
    });
    registerSecret('two-API client token', result.token);
    expect(result.uitpas).toMatchObject({ status: 200, body: { client: uitpasAuth.clientId } });
    expect(result.entry).toMatchObject({ status: 200, body: { client: entryAuth.clientId } });
    // One client token opened both.
    expect(result.tokenEvents).toBe(1);
    expect(decodeJwt(result.token)).toMatchObject({ origin: pageOrigin, upstreams: ['uitpas', 'entry'] });
    expect([uitpasAuth.tokenRequests(), entryAuth.tokenRequests()]).toEqual([1, 1]);

    // A client narrowed to entry gets a token for entry alone, and uitpas refuses it.
    const narrowed = await tab.evaluate(async () => {
      const client = window.makeClient({ upstreams: ['entry'] });
      const refused = await client.upstream('uitpas').fetch('/hello');
      return { status: refused.status, code: (await refused.json()).code, token: await client.getToken() };
    });
    registerSecret('narrowed client token', narrowed.token);
    expect(narrowed).toMatchObject({ status: 403, code: 'upstream_not_allowed' });
    expect(decodeJwt(narrowed.token)).toMatchObject({ upstreams: ['entry'] });
    await tab.close();
  });
});
