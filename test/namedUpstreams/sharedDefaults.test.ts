import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { proxied, tokenFor } from './support.js';

let auth: TestAuthServer;
let uitpasApi: ApiServer;
let entryApi: ApiServer;
let postApi: ApiServer;

beforeAll(async () => {
  [auth, uitpasApi, entryApi, postApi] = await Promise.all([
    startTestAuthServer(),
    startEchoApi(),
    startEchoApi(),
    startEchoApi(),
  ]);
});

afterAll(async () => {
  await Promise.all([auth.close(), uitpasApi.close(), entryApi.close(), postApi.close()]);
});

describe('named upstreams with shared defaults, against a real authorization server', () => {
  it('when two names take the token settings from the unprefixed ones, then both APIs open with one shared token, and a name with its own client gets its own', async () => {
    // The harness sets the unprefixed UPSTREAM_TOKEN_URL, _CLIENT_ID, _CLIENT_SECRET, _RESOURCE and _SCOPE
    // of the oidc-provider: under UPSTREAMS they are the shared defaults.
    const broker = await startBroker({
      upstream: auth,
      env: {
        UPSTREAMS: 'uitpas,entry,post',
        RATE_LIMIT_CLIENT_TOKEN: 'off',
        UPSTREAM_TIMEOUT_MS: '4000',
        UPSTREAM_UITPAS_API_URL: uitpasApi.origin,
        UPSTREAM_ENTRY_API_URL: entryApi.origin,
        UPSTREAM_ENTRY_API_TIMEOUT_MS: '60000',
        // Its own client at the shared token endpoint: its own credential, so nothing shared is sent for it.
        UPSTREAM_POST_API_URL: postApi.origin,
        UPSTREAM_POST_CLIENT_ID: auth.postClient.clientId,
        UPSTREAM_POST_CLIENT_SECRET: auth.postClient.clientSecret,
        UPSTREAM_POST_AUTH_METHOD: 'client_secret_post',
      },
    });
    const grantAndTimeout = [
      'UPSTREAM_TOKEN_URL',
      'UPSTREAM_SCOPE',
      'UPSTREAM_RESOURCE',
      'UPSTREAM_TIMEOUT_MS',
    ];
    const client = ['UPSTREAM_CLIENT_ID', 'UPSTREAM_CLIENT_SECRET'];
    expect(broker.config.upstreams.map(({ name, inherited }) => [name, [...inherited].sort()])).toEqual([
      ['uitpas', [...grantAndTimeout, ...client].sort()],
      ['entry', [...grantAndTimeout, ...client].sort()],
      ['post', [...grantAndTimeout].sort()],
    ]);
    expect(broker.config.upstreams.map(({ config }) => config.apiTimeoutMs)).toEqual([
      300_000, 60_000, 300_000,
    ]);

    const token = await tokenFor(broker.url, appOrigin);
    const before = auth.tokenRequests();
    const answers = await Promise.all([
      proxied(broker.url, '/api/proxy/uitpas/passes', token, appOrigin),
      proxied(broker.url, '/api/proxy/entry/events', token, appOrigin),
      proxied(broker.url, '/api/proxy/post/things', token, appOrigin),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    // uitpas and entry ask for the same token; post's own client is another.
    expect(auth.tokenRequests() - before).toBe(2);
    const bearer = (api: ApiServer) => api.requests.at(-1)?.headers.authorization;
    expect(bearer(uitpasApi)).toBe(bearer(entryApi));
    expect(bearer(postApi)).toMatch(/^Bearer /);
    expect(bearer(postApi)).not.toBe(bearer(uitpasApi));
  });
});
