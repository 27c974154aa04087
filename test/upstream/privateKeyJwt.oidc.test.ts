import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { decodeJwt, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, toPublicJwks } from '../../src/cli/jwks.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config/index.js';
import { type DemoApi, startDemoApi } from '../../src/dev/demoApi.js';
import { UpstreamError } from '../../src/errors.js';
import { createTokenCache } from '../../src/upstream/tokenCache.js';
import { createTokenClient } from '../../src/upstream/tokenClient.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

const { logger, lines } = captureLogs();

/** A private JWK Set of one key, as `token-broker keys generate` prints it (RSA: from node:crypto). */
async function clientKeySet(alg: 'EdDSA' | 'ES256' | 'RS256'): Promise<{ keys: JWK[] }> {
  const jwk: JWK =
    alg === 'RS256'
      ? {
          ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
            format: 'jwk',
          }) as JWK),
          kid: `rsa-${randomUUID()}`,
          alg: 'RS256',
        }
      : await generateSigningKey(alg);
  registerSecret(`oidc client key ${alg}`, JSON.stringify(jwk));
  registerSecret(`oidc client key ${alg} d`, jwk.d as string);
  return { keys: [jwk] };
}

const clients = {
  ES256: { clientId: `pkjwt-es256-${randomUUID()}` },
  EdDSA: { clientId: `pkjwt-eddsa-${randomUUID()}` },
  RS256: { clientId: `pkjwt-rs256-${randomUUID()}` },
};
const keySets = {} as Record<keyof typeof clients, { keys: JWK[] }>;
let auth: TestAuthServer;
let api: DemoApi;

beforeAll(async () => {
  for (const alg of Object.keys(clients) as (keyof typeof clients)[]) keySets[alg] = await clientKeySet(alg);
  auth = await startTestAuthServer({
    logger,
    privateKeyJwtClients: (Object.keys(clients) as (keyof typeof clients)[]).map((alg) => ({
      clientId: clients[alg].clientId,
      // What `token-broker keys public` prints: the public half only.
      jwks: toPublicJwks(keySets[alg]).jwks as { keys: Record<string, unknown>[] },
    })),
  });
  api = await startDemoApi({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.resource, logger });
});

afterAll(async () => {
  await api?.close();
  await auth?.close();
});

/** The broker's own path: environment → loadConfig → token client, against the real provider. */
function configFor(alg: keyof typeof clients, extra: Record<string, string> = {}) {
  const config = loadConfig({
    UPSTREAM_TOKEN_URL: auth.tokenUrl,
    UPSTREAM_CLIENT_ID: clients[alg].clientId,
    UPSTREAM_AUTH_METHOD: 'private_key_jwt',
    UPSTREAM_CLIENT_KEY: JSON.stringify(keySets[alg]),
    UPSTREAM_RESOURCE: auth.resource,
    UPSTREAM_SCOPE: auth.scope,
    ...extra,
  });
  const upstream = config.upstreams[0]?.config;
  if (!upstream) throw new Error('no upstream');
  return upstream;
}

async function callApi(accessToken: string) {
  return fetch(new URL('hello', api.url), { headers: { authorization: `Bearer ${accessToken}` } });
}

describe('private_key_jwt against a real oidc-provider', () => {
  it.each(['ES256', 'EdDSA', 'RS256'] as const)(
    'when the client key is %s and registered by its public JWKS, then the provider issues a token the API accepts',
    async (alg) => {
      const client = createTokenClient({ config: configFor(alg), clock: systemClock, logger });
      const token = await client.clientCredentials();
      registerSecret('oidc pkjwt access token', token.accessToken);
      expect(decodeJwt(token.accessToken)).toMatchObject({
        client_id: clients[alg].clientId,
        aud: auth.resource,
      });
      expect((await callApi(token.accessToken)).status).toBe(200);
    },
  );

  it('when the audience is the issuer and the endpoint is discovered, then the provider accepts the assertion', async () => {
    const config = configFor('ES256', {
      UPSTREAM_TOKEN_URL: '',
      UPSTREAM_ISSUER: auth.issuer,
      UPSTREAM_CLIENT_ASSERTION_AUDIENCE: 'issuer',
    });
    const client = createTokenClient({ config, clock: systemClock, logger });
    const token = await client.clientCredentials();
    registerSecret('oidc pkjwt issuer access token', token.accessToken);
    expect((await callApi(token.accessToken)).status).toBe(200);
  });

  it('when the broker holds a key the client did not register, then the provider answers invalid_client, a configuration error', async () => {
    const config = configFor('ES256', { UPSTREAM_CLIENT_KEY: JSON.stringify(await clientKeySet('ES256')) });
    const client = createTokenClient({ config, clock: systemClock, logger });
    const error = await client.clientCredentials().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).error).toBe('invalid_client');
    expect((error as UpstreamError).isConfigurationError).toBe(true);
  });

  it('when the cache renews several times, then every request passes the provider’s jti replay check', async () => {
    const config = configFor('EdDSA');
    const client = createTokenClient({ config, clock: systemClock, logger });
    const cache = createTokenCache({ client, config, clock: systemClock, logger });
    const seen: string[] = [];
    for (let round = 0; round < 3; round += 1) {
      const token = await cache.get();
      registerSecret('oidc pkjwt cached access token', token.accessToken);
      seen.push(token.accessToken);
      await cache.invalidate(token.accessToken);
    }
    cache.close();
    expect(new Set(seen).size).toBe(3);
    expect(JSON.stringify(lines())).not.toContain('client_assertion');
  });
});
