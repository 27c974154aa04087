import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerClientOptions } from '../../src/browser/client.js';
import { namedUpstreamsEnv } from '../namedUpstreams/support.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { type LaunchedChromium, launchChromium } from '../support/chromium.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { missing } from '../support/requires.js';
import { signingKeySet } from '../support/signingKeys.js';
import { type SocketApi, startSocketApi } from '../support/socketApi.js';
import { handshake, offerFor } from '../support/socketClient.js';

// The fleet's two replicas share Redis at 6379.
const noChromiumOrRedis = await missing('chromium', 'redis');

interface SocketResult {
  protocol: string;
  echo: string;
  token: string;
}

declare global {
  interface Window {
    socketsReady?: boolean;
    /** Opens a socket with a new client and waits for it to open; `window.socketClosed` settles with its close. */
    openSocket(
      options: BrokerClientOptions,
      upstream: string,
      path: string,
      protocols?: string[],
    ): Promise<SocketResult>;
    socketClosed: Promise<{ code: number; reason: string; at: number }>;
  }
}

/** A web app's page: imports `/client.js` from the broker in `?broker=` and opens sockets on request. */
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sockets</title><link rel="icon" href="data:,"></head>
<body><script type="module">
const broker = new URLSearchParams(location.search).get('broker');
const { createBrokerClient } = await import(broker + '/client.js');
window.openSocket = async (options, upstream, path, protocols) => {
  const client = createBrokerClient({ baseUrl: broker, ...options });
  const socket = await client.upstream(upstream).websocket(path, protocols);
  window.socketClosed = new Promise((resolve) => {
    socket.onclose = (event) => resolve({ code: event.code, reason: event.reason, at: Date.now() });
  });
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error('the socket did not open'));
  });
  const echo = new Promise((resolve) => {
    socket.onmessage = (event) => resolve(event.data);
  });
  socket.send('hello through the broker');
  return { protocol: socket.protocol, echo: await echo, token: await client.getToken() };
};
window.socketsReady = true;
</script></body></html>`;

let auth: TestAuthServer;
let api: SocketApi;
let pageServer: Server;
let pageOrigin: string;
/** Two replicas of one fleet (one Redis prefix, one signing key set). */
let here: OidcBroker;
let there: OidcBroker;
let shortLived: OidcBroker;
let browser: LaunchedChromium;

beforeAll(async () => {
  const launching = launchChromium();
  auth = await startTestAuthServer();
  api = await startSocketApi({ select: (offered) => offered.find((item) => item === 'chat.v2') });
  pageServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page);
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
  const env = {
    ...namedUpstreamsEnv(auth, { chat: { API_URL: api.origin }, feed: { API_URL: api.origin } }),
    ALLOWED_ORIGINS: pageOrigin,
  };
  const fleet = {
    ...env,
    REDIS_URL: 'redis://127.0.0.1:6379',
    REDIS_KEY_PREFIX: `tb-ws-chromium-${randomBytes(6).toString('hex')}:`,
    CACHE_ENCRYPTION_KEY: registerSecret('cache key', randomBytes(32).toString('base64')),
    SIGNING_KEYS: await signingKeySet(),
  };
  [here, there, shortLived] = await Promise.all([
    startBroker({ upstream: auth, env: fleet }),
    startBroker({ upstream: auth, env: fleet }),
    startBroker({
      upstream: auth,
      env: { ...env, CLIENT_TOKEN_TTL: '3', CLIENT_TOKEN_CLOCK_TOLERANCE: '0' },
    }),
  ]);
  browser = await launching;
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([here?.close(), there?.close(), shortLived?.close()]);
  pageServer?.closeAllConnections();
  await new Promise((resolve) => pageServer?.close(resolve));
  await api?.close();
  await auth?.close();
});

async function openTab(broker: OidcBroker): Promise<Page> {
  const tab = await browser.context.newPage();
  await tab.goto(`${pageOrigin}/?broker=${encodeURIComponent(broker.url)}`);
  await tab.waitForFunction(() => window.socketsReady === true);
  return tab;
}

describe.skipIf(noChromiumOrRedis)('WebSockets from a page through client.js in Chromium', () => {
  it('when a page opens a socket to the echo API and its token is revoked on another replica, then messages echo and the socket closes with 4403 within 1 s', async () => {
    const tab = await openTab(here);
    const opened = await tab.evaluate(() =>
      window.openSocket({ upstreams: ['chat'] }, 'chat', '/rooms/1', ['chat.v2']),
    );
    const token = registerSecret('browser client token', opened.token);
    expect(opened).toMatchObject({ protocol: 'chat.v2', echo: 'hello through the broker' });
    expect(api.handshakes.at(-1)).toMatchObject({ url: '/rooms/1', protocols: ['chat.v2'] });

    // The same token may not open an upstream it was not minted for.
    const refused = await handshake(here.url, '/api/proxy/feed/x', {
      origin: pageOrigin,
      'sec-websocket-protocol': offerFor(token).join(','),
    });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).code).toBe('upstream_not_allowed');

    const revokedAt = Date.now();
    const answer = await fetch(`${there.url}/api/client-token/revoke`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${there.apiKey}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }),
    });
    expect(answer.status).toBe(200);
    const closed = await tab.evaluate(() => window.socketClosed);
    expect(closed).toMatchObject({ code: 4403, reason: 'client token revoked' });
    expect(closed.at - revokedAt).toBeLessThan(1_000);
    for (const broker of [here, there]) {
      expectNoSecrets(JSON.stringify(broker.logs.lines()), [...broker.secrets(), token], 'log');
    }
    await tab.close();
  });

  it('when the API selects none of the page protocols, then the page gets token-broker and the socket works', async () => {
    const tab = await openTab(here);
    const opened = await tab.evaluate(() => window.openSocket({}, 'feed', 'news', ['news.v9']));
    registerSecret('browser client token', opened.token);
    expect(opened).toMatchObject({ protocol: 'token-broker', echo: 'hello through the broker' });
    await tab.close();
  });

  it('when the page token expires, then its socket closes with 4401 within 1 s of the expiry', async () => {
    const tab = await openTab(shortLived);
    const opened = await tab.evaluate(() => window.openSocket({ autoRefresh: false }, 'chat', '/short'));
    registerSecret('short-lived browser client token', opened.token);
    const { exp } = decodeJwt(opened.token) as { exp: number };
    const closed = await tab.evaluate(() => window.socketClosed);
    expect(closed).toMatchObject({ code: 4401, reason: 'client token expired' });
    expect(closed.at).toBeGreaterThanOrEqual(exp * 1000 - 50);
    expect(closed.at - exp * 1000).toBeLessThan(1_000);
    await tab.close();
  });
});
