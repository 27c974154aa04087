import { randomBytes } from 'node:crypto';
import { importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { ath, makeProof, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { call } from '../support/rawCall.js';
import { signingKeySet } from '../support/signingKeys.js';
import { clientTokenFor, namedUpstreamsEnv, proxied, tokenFor } from './support.js';

const app = 'https://app.example.com';
const events = 'https://events.example.com';
const origins = `${app},${events}`;

let auth: TestAuthServer;
let uitpasApi: ApiServer;
let entryApi: ApiServer;
const brokers: OidcBroker[] = [];

beforeAll(async () => {
  [auth, uitpasApi, entryApi] = await Promise.all([startTestAuthServer(), startEchoApi(), startEchoApi()]);
});

afterAll(async () => {
  await Promise.all(brokers.map((broker) => broker.close()));
  await Promise.all([auth.close(), uitpasApi.close(), entryApi.close()]);
});

async function broker(env: Record<string, string>): Promise<OidcBroker> {
  const started = await startBroker({ env: { ALLOWED_ORIGINS: origins, ...env }, upstream: auth });
  brokers.push(started);
  return started;
}

/** publiq-style: two API hosts, one client and one audience, so one token; entry only for `events`. */
const sharedEnv = () =>
  namedUpstreamsEnv(auth, {
    uitpas: { API_URL: uitpasApi.origin },
    entry: { API_URL: entryApi.origin, ALLOWED_ORIGINS: events },
  });

const bearerOf = (api: ApiServer) => api.requests.map((request) => request.headers.authorization);

/** 200 callers at once, half on each API, with nothing cached yet; answers the token requests they made. */
async function coldBurst(target: OidcBroker): Promise<{ statuses: number[]; tokenRequests: number }> {
  const token = await tokenFor(target.url, events);
  const before = auth.tokenRequests();
  const answers = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      proxied(
        target.url,
        i % 2 === 0 ? `/api/proxy/uitpas/p/${i}` : `/api/proxy/entry/e/${i}`,
        token,
        events,
      ),
    ),
  );
  return { statuses: answers.map((answer) => answer.status), tokenRequests: auth.tokenRequests() - before };
}

describe('named upstreams behind one broker', () => {
  it('when 200 cold callers spread over two APIs that share a token, then exactly 1 upstream request is made', async () => {
    const target = await broker(sharedEnv());
    uitpasApi.requests.length = 0;
    entryApi.requests.length = 0;
    const { statuses, tokenRequests } = await coldBurst(target);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(tokenRequests).toBe(1);
    expect(uitpasApi.requests).toHaveLength(100);
    expect(entryApi.requests).toHaveLength(100);
    // Each API got the path after its name, with the one shared upstream token.
    expect(uitpasApi.requests[0]?.url).toMatch(/^\/p\/\d+$/);
    expect(entryApi.requests[0]?.url).toMatch(/^\/e\/\d+$/);
    const tokens = new Set([...bearerOf(uitpasApi), ...bearerOf(entryApi)]);
    expect(tokens.size).toBe(1);
  });

  it('when two upstreams ask for different audiences, then 200 cold callers make exactly 2 upstream requests', async () => {
    const target = await broker(
      namedUpstreamsEnv(auth, {
        uitpas: { API_URL: uitpasApi.origin, AUDIENCE: 'https://uitpas.example.com' },
        entry: { API_URL: entryApi.origin, AUDIENCE: 'https://entry.example.com' },
      }),
    );
    uitpasApi.requests.length = 0;
    entryApi.requests.length = 0;
    const { statuses, tokenRequests } = await coldBurst(target);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(tokenRequests).toBe(2);
    expect(new Set(bearerOf(uitpasApi)).size).toBe(1);
    expect(new Set(bearerOf(entryApi)).size).toBe(1);
    expect(bearerOf(uitpasApi)[0]).not.toBe(bearerOf(entryApi)[0]);
  });

  describe('which upstreams a client token opens', () => {
    let target: OidcBroker;
    beforeAll(async () => {
      target = await broker(sharedEnv());
    });

    const introspect = async (token: string) =>
      (
        await call(target.url, '/api/client-token/introspect', {
          method: 'POST',
          headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ token }),
        })
      ).json();

    it('when an origin mints a token, then it opens every upstream the origin may reach, as introspection says', async () => {
      expect(await introspect(await tokenFor(target.url, events))).toMatchObject({
        active: true,
        upstreams: ['uitpas', 'entry'],
      });
      // UPSTREAM_ENTRY_ALLOWED_ORIGINS leaves `app` out of entry.
      expect(await introspect(await tokenFor(target.url, app))).toMatchObject({ upstreams: ['uitpas'] });
      expect(await introspect(await tokenFor(target.url, events, '?upstreams=entry'))).toMatchObject({
        upstreams: ['entry'],
      });
    });

    it('when a token for uitpas is used at /api/proxy/entry, then it is refused with 403 upstream_not_allowed', async () => {
      const token = await tokenFor(target.url, events, '?upstreams=uitpas');
      const refused = await proxied(target.url, '/api/proxy/entry/e/1', token, events);
      expect(refused.status).toBe(403);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json()).toMatchObject({ code: 'upstream_not_allowed' });
      expect((await proxied(target.url, '/api/proxy/uitpas/p/1', token, events)).status).toBe(200);
    });

    it('when an origin outside an upstream’s ALLOWED_ORIGINS asks for it or calls it, then 403 upstream_not_allowed', async () => {
      const asked = await clientTokenFor(target.url, app, '?upstreams=uitpas,entry');
      expect(asked.status).toBe(403);
      expect(asked.json()).toMatchObject({ code: 'upstream_not_allowed' });
      expect(String(asked.json().detail)).toContain('"entry"');
      const token = await tokenFor(target.url, app);
      const called = await proxied(target.url, '/api/proxy/entry/e/1', token, app);
      expect(called.status).toBe(403);
      expect(called.json()).toMatchObject({ code: 'upstream_not_allowed' });
      // Through the claim route the key chooses the origin, but the upstream's own origins still narrow.
      const claimed = await call(target.url, '/api/auth/claim', {
        method: 'POST',
        headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ origin: 'https://partner.example.org', upstreams: ['entry'] }),
      });
      expect(claimed.status).toBe(403);
      expect(claimed.json()).toMatchObject({ code: 'upstream_not_allowed' });
    });

    it('when /api/auth/claim names upstreams, then the token opens exactly those', async () => {
      const claimed = await call(target.url, '/api/auth/claim', {
        method: 'POST',
        headers: {
          authorization: `Bearer ${target.apiKey}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: `origin=${encodeURIComponent(events)}&upstreams=entry`,
      });
      expect(claimed.status).toBe(200);
      expect(await introspect(claimed.json().token as string)).toMatchObject({ upstreams: ['entry'] });
      const token = claimed.json().token as string;
      expect((await proxied(target.url, '/api/proxy/entry/e/2', token, events)).status).toBe(200);
      expect((await proxied(target.url, '/api/proxy/uitpas/p/2', token, events)).status).toBe(403);
    });

    it('when a name is unknown, then a route answers 404 not_found and a query or body 400 invalid_request', async () => {
      const token = await tokenFor(target.url, events);
      const route = await proxied(target.url, '/api/proxy/nope/x', token, events);
      expect([route.status, route.json().code]).toEqual([404, 'not_found']);
      expect(route.json().detail).toBe(
        'no such upstream; the proxy routes are /api/proxy/uitpas/*, /api/proxy/entry/*',
      );
      const query = await clientTokenFor(target.url, events, '?upstreams=uitpas,nope');
      expect([query.status, query.json().code]).toEqual([400, 'invalid_request']);
      expect(String(query.json().detail)).toContain('"nope" is not configured');
      const body = await call(target.url, '/api/auth/claim', {
        method: 'POST',
        headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ origin: events, upstreams: ['nope'] }),
      });
      expect([body.status, body.json().code]).toEqual([400, 'invalid_request']);
      const wrongType = await call(target.url, '/api/auth/claim', {
        method: 'POST',
        headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ origin: events, upstreams: 42 }),
      });
      expect([wrongType.status, wrongType.json().code]).toEqual([400, 'invalid_request']);
      const upstreamToken = (query: string) =>
        call(target.url, `/api/upstream-token${query}`, {
          headers: { authorization: `Bearer ${target.apiKey}` },
        });
      expect((await upstreamToken('?upstream=nope')).status).toBe(400);
      expect((await upstreamToken('')).json()).toMatchObject({ code: 'invalid_request' });
      expect((await upstreamToken('?upstream=entry')).json()).toMatchObject({ token_type: 'Bearer' });
    });

    it('when /readyz, /metrics and /openapi.json are read, then each upstream is reported by name', async () => {
      const ready = await call(target.url, '/readyz');
      expect(ready.status).toBe(200);
      expect(ready.json()).toMatchObject({
        status: 'ready',
        upstreams: { uitpas: { token: 'held' }, entry: { token: 'held' } },
      });
      expect(ready.json().upstream).toBeUndefined();
      await proxied(target.url, '/api/proxy/entry/e/3', await tokenFor(target.url, events), events);
      const metrics = (await call(target.url, '/metrics')).text();
      expect(metrics).toMatch(
        /token_broker_upstream_token_expires_in_seconds\{upstream="uitpas,entry"\} \d+/,
      );
      expect(metrics).toMatch(
        /token_broker_proxy_request_duration_seconds_count\{upstream="entry",method="GET",status="200"\} \d+/,
      );
      const document = (await call(target.url, '/openapi.json')).json() as {
        paths: Record<
          string,
          Record<string, { parameters?: { name: string; schema: { enum?: string[] } }[] }>
        >;
      };
      const proxyPath = document.paths['/api/proxy/{upstream}/{path}'];
      expect(proxyPath?.get?.parameters?.find((p) => p.name === 'upstream')?.schema.enum).toEqual([
        'uitpas',
        'entry',
      ]);
      const tokenRoute = document.paths['/api/upstream-token']?.get;
      expect(tokenRoute?.parameters?.find((p) => p.name === 'upstream')?.schema.enum).toEqual([
        'uitpas',
        'entry',
      ]);
      expect(document.paths['/api/proxy/{path}']).toBeUndefined();
    });
  });

  describe('client tokens minted before names existed', () => {
    /** A token signed by the broker's key exactly as before: no `upstreams` claim. */
    async function claimlessToken(keySet: string): Promise<string> {
      const [jwk] = (JSON.parse(keySet) as { keys: (Record<string, string> & { kid: string })[] }).keys;
      if (!jwk) throw new Error('no key');
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ origin: events, ip: '127.0.0.1' })
        .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid, typ: 'client-token+jwt' })
        .setIssuer('urn:token-broker')
        .setAudience('urn:token-broker:proxy')
        .setSubject(events)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .setJti(randomBytes(16).toString('base64url'))
        .sign(await importJWK(jwk, 'EdDSA'));
    }

    it('when such a token is used, then it opens the default upstream and no named one', async () => {
      const keys = await signingKeySet();
      const token = await claimlessToken(keys);
      const single = await broker({ SIGNING_KEYS: keys, UPSTREAM_API_URL: uitpasApi.origin });
      expect((await proxied(single.url, '/api/proxy/p/old', token, events)).status).toBe(200);
      const named = await broker({ ...sharedEnv(), SIGNING_KEYS: keys });
      const refused = await proxied(named.url, '/api/proxy/uitpas/p/old', token, events);
      expect([refused.status, refused.json().code]).toEqual([403, 'upstream_not_allowed']);
      // A new token of the single-upstream broker names `default`, and /readyz keeps its old shape.
      expect(
        await (async () => {
          const answer = await call(single.url, '/api/client-token/introspect', {
            method: 'POST',
            headers: { authorization: `Bearer ${single.apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ token: await tokenFor(single.url, events) }),
          });
          return answer.json().upstreams;
        })(),
      ).toEqual(['default']);
      expect((await call(single.url, '/readyz')).json()).toMatchObject({
        upstream: { token: 'held' },
        upstreams: { default: { token: 'held' } },
      });
    });
  });
});

describe('DPoP proofs sent to an upstream the token does not open', () => {
  it('when a bound token floods another upstream with fresh proofs, then each is refused before it is remembered, and the key keeps its whole share', async () => {
    const perKey = 10;
    const target = await broker({
      ...namedUpstreamsEnv(auth, {
        uitpas: { API_URL: uitpasApi.origin },
        entry: { API_URL: entryApi.origin },
      }),
      CLIENT_TOKEN_BINDING: 'dpop',
      DPOP_PROOFS_PER_KEY: String(perKey),
      RATE_LIMIT_PROXY: 'off',
    });
    const key = await proofKey();
    const tokenUrl = `${target.url}/api/client-token`;
    const minted = await fetch(`${tokenUrl}?upstreams=uitpas`, {
      method: 'POST',
      headers: { origin: app, dpop: await makeProof(key, { htm: 'POST', htu: tokenUrl }) },
    });
    expect(minted.status).toBe(200);
    const token = registerSecret(
      'dpop uitpas client token',
      ((await minted.json()) as { token: string }).token,
    );
    const send = async (path: string) => {
      const url = `${target.url}${path}`;
      const proof = await makeProof(key, { htm: 'GET', htu: url, ath: ath(token) });
      const answer = await fetch(url, {
        headers: { origin: app, authorization: `DPoP ${token}`, dpop: proof },
      });
      await answer.body?.cancel();
      return answer.status;
    };
    for (let i = 0; i < perKey * 2; i += 1) expect(await send(`/api/proxy/entry/e/${i}`)).toBe(403);
    // The proof that minted the token is one of the share: the rest are all still there.
    for (let i = 1; i < perKey; i += 1) expect(await send(`/api/proxy/uitpas/p/${i}`)).toBe(200);
  });
});
