import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock, systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config/index.js';
import { type DemoApi, startDemoApi } from '../../src/dev/demoApi.js';
import { startDevUpstream } from '../../src/dev/devUpstream.js';
import { UpstreamError } from '../../src/errors.js';
import { createTokenClient } from '../../src/upstream/tokenClient.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

const specialClient = {
  clientId: 'client:with%special+chars and spaces',
  clientSecret: registerSecret('special client secret', 'se:cr%et+with/special=chars-and-more-length'),
};

let auth: TestAuthServer;
let api: DemoApi;
const { logger, lines } = captureLogs();

beforeAll(async () => {
  auth = await startTestAuthServer({
    logger,
    accessTokenTtl: 120,
    clients: [
      {
        client_id: specialClient.clientId,
        client_secret: specialClient.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api:read',
      },
    ],
  });
  api = await startDemoApi({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.resource, logger });
});

afterAll(async () => {
  await api?.close();
  await auth?.close();
});

async function obtain(overrides: Parameters<TestAuthServer['upstreamConfig']>[0] = {}, clock = systemClock) {
  const client = createTokenClient({ config: auth.upstreamConfig(overrides), clock, logger });
  const token = await client.clientCredentials();
  registerSecret('oidc access token', token.accessToken);
  return token;
}

function callApi(accessToken: string | undefined) {
  return fetch(new URL('hello', api.url), {
    headers: accessToken ? { authorization: `Bearer ${accessToken}` } : {},
  });
}

describe('token client against a real oidc-provider', () => {
  it('when client_secret_basic is used, then the token is a JWT for the resource living expires_in seconds', async () => {
    const clock = createManualClock(Date.now());
    const before = auth.tokenRequests();
    const token = await obtain({}, clock);

    expect(auth.tokenRequests() - before).toBe(1);
    const claims = decodeJwt(token.accessToken);
    expect(claims.aud).toBe(auth.resource);
    expect(claims.client_id).toBe(auth.clientId);
    expect(claims.iss).toBe(auth.issuer);
    expect(token).toMatchObject({ tokenType: 'Bearer', scope: 'api:read', obtainedAt: clock.now() });
    expect(token.expiresAt).toBe(clock.now() + 120_000);
    expect(token.refreshToken).toBeUndefined();
  });

  it('when client_secret_post is used, then the post client gets a token for the resource', async () => {
    const token = await obtain({ authMethod: 'client_secret_post', ...auth.postClient });

    const claims = decodeJwt(token.accessToken);
    expect(claims.client_id).toBe(auth.postClient.clientId);
    expect(claims.aud).toBe(auth.resource);
  });

  it('when the client id and secret hold ":", "%", "+" and spaces, then Basic authentication still succeeds', async () => {
    const token = await obtain(specialClient);

    expect(decodeJwt(token.accessToken).client_id).toBe(specialClient.clientId);
  });

  it('when only the issuer is configured, then discovery finds the token endpoint and the grant works', async () => {
    const client = createTokenClient({
      config: auth.upstreamConfig({ issuer: auth.issuer, tokenUrl: undefined }),
      clock: systemClock,
      logger,
    });

    expect(await client.tokenEndpoint()).toBe(auth.tokenUrl);
    const token = await client.clientCredentials();
    registerSecret('oidc access token', token.accessToken);
    expect(decodeJwt(token.accessToken).aud).toBe(auth.resource);
  });

  it('when the secret is wrong, then an invalid_client UpstreamError marks a configuration error', async () => {
    const wrongSecret = registerSecret('wrong secret', 'definitely-not-the-right-secret');
    const error = await obtain({ clientSecret: wrongSecret }).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ error: 'invalid_client', httpStatus: 401, isConfigurationError: true });
    expect((error as Error).message).not.toContain(wrongSecret);
  });

  it('when an unknown resource is asked for, then invalid_target is a configuration error', async () => {
    const error = await obtain({ resource: 'https://other-api.token-broker.test/' }).catch(
      (caught: unknown) => caught,
    );

    expect(error).toMatchObject({ error: 'invalid_target', isConfigurationError: true });
  });

  it('when a token was obtained, then a debug line names endpoint, grant and status and holds no secret', async () => {
    await obtain();

    const line = lines().find((entry) => entry.msg === 'upstream token request' && entry.status === 200);
    expect(line).toMatchObject({ endpoint: auth.tokenUrl, grant: 'client_credentials', outcome: 'ok' });
    expect(JSON.stringify(lines())).not.toContain(auth.clientSecret);
  });
});

describe('demo API', () => {
  it('when called with the provider token, then it answers who called', async () => {
    const token = await obtain();
    const answer = await callApi(token.accessToken);

    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ client: auth.clientId, scope: 'api:read' });
  });

  it('when the token is tampered with or missing, then it answers 401 invalid_token', async () => {
    const token = await obtain();
    const [header, payload, signature] = token.accessToken.split('.');
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
    const forged = Buffer.from(JSON.stringify({ ...claims, scope: 'api:admin' })).toString('base64url');
    const tampered = registerSecret('tampered token', `${header}.${forged}.${signature}`);

    for (const attempt of [tampered, undefined]) {
      const answer = await callApi(attempt);
      expect(answer.status).toBe(401);
      expect(answer.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    }
  });
});

describe('dev upstream', () => {
  it('when started, then its env is a valid broker config whose token the demo API accepts', async () => {
    const dev = await startDevUpstream({ logger });
    try {
      registerSecret('dev upstream client secret', dev.env.UPSTREAM_CLIENT_SECRET ?? '');
      const config = loadConfig({ ...dev.env, NODE_ENV: 'test' });
      const upstream = config.upstreams[0]?.config;
      expect(upstream).toBeDefined();
      if (!upstream) return;
      const token = await createTokenClient({
        config: upstream,
        clock: systemClock,
        logger,
      }).clientCredentials();
      registerSecret('dev upstream access token', token.accessToken);

      const answer = await fetch(new URL('hello', upstream.apiUrl), {
        headers: { authorization: `Bearer ${token.accessToken}` },
      });
      expect(answer.status).toBe(200);
      expect(await answer.json()).toMatchObject({ client: dev.env.UPSTREAM_CLIENT_ID, scope: 'api:read' });
    } finally {
      await dev.close();
    }
  });
});
