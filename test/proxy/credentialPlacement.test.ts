import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, closedPort, startApiServer, startVerifyingApi } from '../support/apiServers.js';
import { appOrigin, type OidcBroker, startBroker } from '../support/broker.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { call, type RawAnswer } from '../support/rawCall.js';

/**
 * Three kinds of API behind one broker: Trefle's, which reads a static key from `?token=`; one that reads a
 * static key from `x-api-key`; and an OAuth-protected one. The keys never leave the broker by any way out.
 */

const trefleKey = registerSecret('trefle api key', `trefle-${randomBytes(18).toString('base64url')}`);
const headerKey = registerSecret('x-api-key', `hdr-${randomBytes(18).toString('base64url')}`);

let auth: TestAuthServer;
let trefle: ApiServer;
let keyed: ApiServer;
let oauth: ApiServer;
let broker: OidcBroker;
let token: string;
const answers: RawAnswer[] = [];

/** Trefle's API: `?token=` must be its key; a redirect and a pagination link carry the key back, as Trefle's do. */
function startTrefleApi(): Promise<ApiServer> {
  return startApiServer((req, res, _record, body) => {
    void body.then(() => {
      const url = new URL(req.url ?? '/', 'http://trefle.local');
      const tokens = url.searchParams.getAll('token');
      if (tokens.length !== 1 || tokens[0] !== trefleKey || url.pathname === '/v1/revoked') {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"invalid token"}');
        return;
      }
      if (url.pathname === '/v1/redirect') {
        res.writeHead(302, {
          location: `/v1/plants?page=2&token=${trefleKey}&q=a%20b`,
          'content-location': `http://trefle.local/v1/plants?token=${encodeURIComponent(trefleKey)}`,
          link: `</v1/plants?token=${trefleKey}&page=3>; rel="next"`,
        });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: [{ slug: 'quercus-rotundifolia' }], query: url.search.length }));
    });
  });
}

/** An API reading `x-api-key`: 403 for its `/forbidden` resource, which the key does not open. */
function startKeyedApi(): Promise<ApiServer> {
  return startApiServer((req, res, _record, body) => {
    void body.then(() => {
      const status =
        req.headers['x-api-key'] !== headerKey ? 401 : req.url?.endsWith('/forbidden') ? 403 : 200;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status }));
    });
  });
}

beforeAll(async () => {
  [auth, trefle, keyed] = await Promise.all([startTestAuthServer(), startTrefleApi(), startKeyedApi()]);
  oauth = await startVerifyingApi(auth);
  broker = await startBroker({
    upstream: auth,
    logLevel: 'debug',
    env: {
      UPSTREAMS: 'trefle,keyed,oauth,gone',
      UPSTREAM_TOKEN_URL: '',
      UPSTREAM_CLIENT_ID: '',
      UPSTREAM_CLIENT_SECRET: '',
      UPSTREAM_RESOURCE: '',
      UPSTREAM_SCOPE: '',
      UPSTREAM_TREFLE_API_URL: `${trefle.origin}/v1`,
      UPSTREAM_TREFLE_API_KEY: trefleKey,
      UPSTREAM_TREFLE_CREDENTIAL_IN: 'query:token',
      UPSTREAM_KEYED_API_URL: keyed.origin,
      UPSTREAM_KEYED_API_KEY: headerKey,
      UPSTREAM_KEYED_CREDENTIAL_IN: 'header:X-Api-Key',
      UPSTREAM_KEYED_ALLOW: 'GET /things/*',
      UPSTREAM_OAUTH_API_URL: oauth.origin,
      UPSTREAM_OAUTH_TOKEN_URL: auth.tokenUrl,
      UPSTREAM_OAUTH_CLIENT_ID: auth.clientId,
      UPSTREAM_OAUTH_CLIENT_SECRET: auth.clientSecret,
      UPSTREAM_OAUTH_RESOURCE: auth.resource,
      UPSTREAM_OAUTH_SCOPE: auth.scope,
      UPSTREAM_GONE_API_URL: `http://127.0.0.1:${await closedPort()}`,
      UPSTREAM_GONE_API_KEY: trefleKey,
      UPSTREAM_GONE_CREDENTIAL_IN: 'query:token',
    },
  });
  token = await broker.clientToken();
});

afterAll(async () => {
  await broker.close();
  await Promise.all([auth.close(), trefle.close(), keyed.close(), oauth.close()]);
});

async function proxied(path: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  const answer = await call(broker.url, path, {
    ...options,
    headers: { origin: appOrigin, authorization: `Bearer ${token}`, ...options.headers },
  });
  answers.push(answer);
  return answer;
}

const refusalLines = () =>
  broker.logs.lines().filter((line) => String(line.msg).startsWith('the API refused the static API key'));

describe('UPSTREAM_CREDENTIAL_IN and UPSTREAM_API_KEY', () => {
  it("when Trefle's API reads ?token=, then the key goes there, in place of the one the client sent, and the rest of the query is kept", async () => {
    const answer = await proxied('/api/proxy/trefle/plants?q=oak&token=from-the-page&%74oken=again&page=1');
    expect(answer.status).toBe(200);
    const seen = trefle.requests.at(-1);
    expect(seen?.url).toBe(`/v1/plants?q=oak&page=1&token=${encodeURIComponent(trefleKey)}`);
    expect(seen?.headers.authorization).toBeUndefined();
  });

  it('when the API redirects with the key in the URL, then Location and Content-Location lose it and a Link holding it is dropped', async () => {
    const answer = await proxied('/api/proxy/trefle/redirect');
    expect(answer.status).toBe(302);
    expect(answer.headers.location).toBe('/v1/plants?page=2&q=a%20b');
    expect(answer.headers['content-location']).toBe('http://trefle.local/v1/plants');
    expect(answer.headers.link).toBeUndefined();
  });

  it("when an API reads x-api-key, then the key goes there, the client's own x-api-key is replaced and no Authorization is sent", async () => {
    const answer = await proxied('/api/proxy/keyed/things/1', {
      headers: { 'x-api-key': 'the-page-guessed' },
    });
    expect(answer.status).toBe(200);
    const seen = keyed.requests.at(-1);
    expect(seen?.headers['x-api-key']).toBe(headerKey);
    expect(seen?.headers.authorization).toBeUndefined();
  });

  it('when a static-key upstream has an allow-list, then it applies as for any upstream', async () => {
    const seen = keyed.requests.length;
    const answer = await proxied('/api/proxy/keyed/admin', { method: 'DELETE' });
    expect(answer.status).toBe(403);
    expect(answer.json()).toMatchObject({
      code: 'path_not_allowed',
      detail: 'DELETE /admin is not allowed on this upstream (UPSTREAM_KEYED_ALLOW)',
    });
    expect(keyed.requests.length).toBe(seen);
  });

  it('when the API refuses a static key with 401 or 403, then the answer is passed on and each upstream logs it once as a configuration problem', async () => {
    for (let i = 0; i < 2; i += 1) {
      const revoked = await proxied('/api/proxy/trefle/revoked');
      expect(revoked.status).toBe(401);
      expect(revoked.json()).toEqual({ error: 'invalid token' });
      const forbidden = await proxied('/api/proxy/keyed/things/forbidden');
      expect(forbidden.status).toBe(403);
    }
    expect(refusalLines().map((line) => [line.upstream, line.status, line.setting, line.level])).toEqual([
      ['trefle', 401, 'UPSTREAM_TREFLE_API_KEY', 'error'],
      ['keyed', 403, 'UPSTREAM_KEYED_API_KEY', 'error'],
    ]);
  });

  it('when a static-key upstream sits next to an OAuth upstream, then the OAuth one still gets its token, and each gets its own credential', async () => {
    const answer = await proxied('/api/proxy/oauth/hello');
    expect(answer.status).toBe(200);
    expect(oauth.requests.at(-1)?.headers.authorization).toMatch(/^Bearer ey/);
    expect(oauth.requests.at(-1)?.headers['x-api-key']).toBeUndefined();
  });

  it('when the API with a query key cannot be reached, then the problem says so without the key', async () => {
    const answer = await proxied('/api/proxy/gone/plants?token=x');
    expect(answer.status).toBe(503);
    expect(answer.json()).toMatchObject({ code: 'upstream_unavailable' });
  });

  it('when /readyz and /api/upstream-token are asked, then a static key is ready and never handed out, and the OAuth token is', async () => {
    const ready = await call(broker.url, '/readyz');
    answers.push(ready);
    expect(ready.status).toBe(200);
    expect(ready.json().upstreams).toMatchObject({
      trefle: { token: 'api_key' },
      keyed: { token: 'api_key' },
      gone: { token: 'api_key' },
      oauth: { token: 'held' },
    });
    const headers = { authorization: `Bearer ${broker.apiKey}` };
    const refused = await call(broker.url, '/api/upstream-token?upstream=trefle', { headers });
    answers.push(refused);
    expect(refused.status).toBe(404);
    expect(refused.json()).toMatchObject({ code: 'not_found' });
    const oauthToken = await call(broker.url, '/api/upstream-token?upstream=oauth', { headers });
    expect(oauthToken.status).toBe(200);
  });

  it('when the run is over, then no answer, metric or log line held a static key', async () => {
    const metrics = await call(broker.url, '/metrics');
    answers.push(metrics);
    expect(metrics.text()).toContain('upstream="trefle"');
    expect(answers.length).toBeGreaterThan(10);
    for (const answer of answers) {
      expectNoSecrets(JSON.stringify(answer.headers), [trefleKey, headerKey], 'answer headers');
      expectNoSecrets(answer.text(), [trefleKey, headerKey], 'answer body');
    }
    const lines = broker.logs.lines();
    expect(lines.some((line) => line.msg === 'proxied request')).toBe(true);
    expectNoSecrets(JSON.stringify(lines), [trefleKey, headerKey], 'log line');
  });
});
