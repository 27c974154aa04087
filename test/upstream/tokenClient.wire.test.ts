import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import type { UpstreamConfig } from '../../src/config/index.js';
import { UpstreamError } from '../../src/errors.js';
import { maxLifetimeSeconds } from '../../src/upstream/jwtExpiry.js';
import { createTokenClient, maxAnswerBytes } from '../../src/upstream/tokenClient.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import {
  type Behaviour,
  decodeBasic,
  type FakeTokenServer,
  grantServer,
  mintToken,
  reply,
  startFakeTokenServer,
  upstreamConfigFor,
} from '../support/oauthServers.js';

const { logger, lines } = captureLogs();
const start = Date.UTC(2026, 2, 1, 12);
const servers: FakeTokenServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function setUp(behaviour: Behaviour, overrides: Partial<UpstreamConfig> = {}) {
  const server = await startFakeTokenServer(behaviour);
  servers.push(server);
  const config = upstreamConfigFor(server.tokenUrl, overrides);
  const clock = createManualClock(start);
  const client = createTokenClient({ config, clock, logger });
  return { server, config, clock, client };
}

function failure(promise: Promise<unknown>): Promise<UpstreamError> {
  return promise.then(
    () => {
      throw new Error('expected an UpstreamError');
    },
    (error: unknown) => {
      expect(error).toBeInstanceOf(UpstreamError);
      return error as UpstreamError;
    },
  );
}

const bearer = (expiresIn: unknown, accessToken = mintToken('wire-access')) =>
  ((_req, res) =>
    reply(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: expiresIn })) as Behaviour;

describe('rfc6749 profile', () => {
  it('when the id and secret hold ":", "%", "+" and spaces, then each is form-encoded before base64 (RFC 6749 §2.3.1)', async () => {
    const clientId = 'my:client%id+x y';
    const clientSecret = registerSecret('special secret', 'p:ss%w+rd with/space=and more');
    const { server, client } = await setUp(bearer(60), {
      clientId,
      clientSecret,
      scope: 'read write',
      audience: 'https://api.example.test',
      resource: 'https://api.example.test/v1',
    });

    await client.clientCredentials();

    const [request] = server.requests;
    const expected = Buffer.from('my%3Aclient%25id%2Bx+y:p%3Ass%25w%2Brd+with%2Fspace%3Dand+more').toString(
      'base64',
    );
    expect(request?.headers.authorization).toBe(`Basic ${expected}`);
    expect(decodeBasic(request?.headers.authorization)).toEqual({ clientId, clientSecret });
    expect(request?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(request?.body))).toEqual({
      grant_type: 'client_credentials',
      scope: 'read write',
      audience: 'https://api.example.test',
      resource: 'https://api.example.test/v1',
    });
  });

  it('when client_secret_post is configured, then the credentials travel in the body and no Authorization header is sent', async () => {
    const { server, config, client } = await setUp(bearer(60), { authMethod: 'client_secret_post' });

    await client.clientCredentials();

    const [request] = server.requests;
    expect(request?.headers.authorization).toBeUndefined();
    expect(Object.fromEntries(new URLSearchParams(request?.body))).toEqual({
      grant_type: 'client_credentials',
      client_id: config.clientId,
      client_secret: config.clientSecret,
    });
  });

  it('when refreshing, then grant_type=refresh_token is sent with Basic auth and the old refresh token is kept', async () => {
    const refreshToken = mintToken('rfc-refresh');
    const { server, config, client } = await setUp(bearer(60));

    const token = await client.refresh(refreshToken);

    const [request] = server.requests;
    expect(Object.fromEntries(new URLSearchParams(request?.body))).toEqual({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
    });
    expect(decodeBasic(request?.headers.authorization)?.clientSecret).toBe(config.clientSecret);
    expect(token.refreshToken).toBe(refreshToken);
  });
});

describe('json profile', () => {
  it('when client credentials run, then a JSON body with audience, scope and resource is sent and expires_in sets the expiry', async () => {
    const grants = grantServer('json', {
      clientId: 'json-client',
      clientSecret: 'json-secret-value-long',
      expiresIn: 3600,
    });
    registerSecret('json secret', 'json-secret-value-long');
    const { server, clock, client } = await setUp(grants.behaviour, {
      profile: 'json',
      clientId: 'json-client',
      clientSecret: 'json-secret-value-long',
      audience: 'https://api.publiq.test',
      scope: 'read',
      resource: 'https://api.publiq.test/v2',
    });

    const token = await client.clientCredentials();

    const [request] = server.requests;
    expect(request?.headers['content-type']).toBe('application/json');
    expect(request?.headers.authorization).toBeUndefined();
    expect(JSON.parse(request?.body ?? '')).toEqual({
      grant_type: 'client_credentials',
      client_id: 'json-client',
      client_secret: 'json-secret-value-long',
      audience: 'https://api.publiq.test',
      scope: 'read',
      resource: 'https://api.publiq.test/v2',
    });
    expect(token).toMatchObject({
      accessToken: grants.accessTokens[0],
      tokenType: 'Bearer',
      obtainedAt: start,
    });
    expect(token.expiresAt).toBe(clock.now() + 3_600_000);
    expect(token.refreshToken).toEqual(expect.any(String));
  });

  it('when refreshing, then the JSON refresh body carries the client credentials and a new access token comes back', async () => {
    const options = {
      clientId: 'json-client',
      clientSecret: registerSecret('json secret', 'json-secret-value-long'),
    };
    const grants = grantServer('json', { ...options, expiresIn: 600 });
    const { server, client } = await setUp(grants.behaviour, { profile: 'json', ...options });
    const first = await client.clientCredentials();

    const renewed = await client.refresh(first.refreshToken ?? '');

    expect(JSON.parse(server.requests[1]?.body ?? '')).toEqual({
      grant_type: 'refresh_token',
      refresh_token: first.refreshToken,
      client_id: 'json-client',
      client_secret: options.clientSecret,
    });
    expect(renewed.accessToken).toBe(grants.accessTokens[1]);
    expect(renewed.refreshToken).toBe(first.refreshToken);
  });

  it('when the refresh token was revoked, then refresh throws invalid_grant, which is not a configuration error', async () => {
    const options = {
      clientId: 'json-client',
      clientSecret: registerSecret('json secret', 'json-secret-value-long'),
    };
    const grants = grantServer('json', options);
    const { client } = await setUp(grants.behaviour, { profile: 'json', ...options });
    const first = await client.clientCredentials();
    grants.revokeRefreshTokens();

    const error = await failure(client.refresh(first.refreshToken ?? ''));

    expect(error).toMatchObject({ error: 'invalid_grant', httpStatus: 400, isConfigurationError: false });
    expect(error.description).toBe('refresh token expired or revoked');
  });
});

describe('bloq profile', () => {
  const options = { clientId: 'bloq-client', clientSecret: 'bloq-secret-value-long' };

  it('when client credentials run, then camelCase fields are sent and accessToken/refreshToken are read', async () => {
    registerSecret('bloq secret', options.clientSecret);
    const grants = grantServer('bloq', options);
    const { server, config, clock, client } = await setUp(grants.behaviour, { profile: 'bloq', ...options });

    const token = await client.clientCredentials();

    expect(JSON.parse(server.requests[0]?.body ?? '')).toEqual({
      grantType: 'clientCredentials',
      ...options,
    });
    expect(token.accessToken).toBe(grants.accessTokens[0]);
    expect(token.refreshToken).toEqual(expect.any(String));
    // Opaque token, no expiresIn: the configured default lifetime.
    expect(token.expiresAt).toBe(clock.now() + config.defaultTtlSeconds * 1000);
  });

  it('when refreshing, then {grantType:"refreshToken"} is sent and the old refresh token is kept unless rotated', async () => {
    registerSecret('bloq secret', options.clientSecret);
    const grants = grantServer('bloq', options);
    const { server, client } = await setUp(grants.behaviour, { profile: 'bloq', ...options });
    const first = await client.clientCredentials();

    const renewed = await client.refresh(first.refreshToken ?? '');

    expect(JSON.parse(server.requests[1]?.body ?? '')).toEqual({
      grantType: 'refreshToken',
      refreshToken: first.refreshToken,
    });
    expect(renewed.accessToken).toBe(grants.accessTokens[1]);
    expect(renewed.refreshToken).toBe(first.refreshToken);
  });

  it('when the server rotates refresh tokens, then the new one replaces the old', async () => {
    registerSecret('bloq secret', options.clientSecret);
    const grants = grantServer('bloq', { ...options, rotateRefreshTokens: true });
    const { client } = await setUp(grants.behaviour, { profile: 'bloq', ...options });
    const first = await client.clientCredentials();

    const renewed = await client.refresh(first.refreshToken ?? '');

    expect(renewed.refreshToken).toEqual(expect.any(String));
    expect(renewed.refreshToken).not.toBe(first.refreshToken);
    await expect(client.refresh(first.refreshToken ?? '')).rejects.toMatchObject({ error: 'invalid_grant' });
  });
});

describe('lifetime', () => {
  it('when expires_in is missing and the token is a JWT, then its exp sets the expiry', async () => {
    const exp = Math.floor(start / 1000) + 900;
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(exp)
      .sign(randomBytes(32));
    registerSecret('jwt access token', jwt);
    const { client } = await setUp(bearer(undefined, jwt));

    expect((await client.clientCredentials()).expiresAt).toBe(exp * 1000);
  });

  it('when the JWT exp is already past, then the default lifetime applies', async () => {
    const exp = Math.floor(start / 1000) - 10;
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(exp)
      .sign(randomBytes(32));
    registerSecret('jwt access token', jwt);
    const { client, config } = await setUp(bearer(undefined, jwt));

    expect((await client.clientCredentials()).expiresAt).toBe(start + config.defaultTtlSeconds * 1000);
  });

  it.each([
    ['a numeric string', '120', start + 120_000],
    ['negative', -5, start + 300_000],
    ['zero', 0, start + 300_000],
    ['a non-numeric string', 'soon', start + 300_000],
    ['more than a year', 10 * maxLifetimeSeconds, start + maxLifetimeSeconds * 1000],
  ])(
    'when expires_in is %s, then the expiry is what was said, the default, or capped at a year',
    async (_label, value, expected) => {
      const { client } = await setUp(bearer(value));

      expect((await client.clientCredentials()).expiresAt).toBe(expected);
    },
  );
});

describe('failures', () => {
  it('when the server answers 503 with Retry-After seconds, then http_503 carries retryAfter', async () => {
    const { client } = await setUp((_req, res) =>
      reply(res, 503, '<html>down</html>', { 'retry-after': '7' }),
    );

    expect(await failure(client.clientCredentials())).toMatchObject({
      error: 'http_503',
      httpStatus: 503,
      retryAfter: 7,
    });
  });

  it('when an OAuth error comes with a Retry-After date, then the error and seconds until that date are kept', async () => {
    const { client } = await setUp((_req, res) =>
      reply(
        res,
        503,
        { error: 'temporarily_unavailable', error_description: 'maintenance' },
        {
          'retry-after': new Date(start + 30_000).toUTCString(),
        },
      ),
    );

    const error = await failure(client.clientCredentials());
    expect(error).toMatchObject({
      error: 'temporarily_unavailable',
      description: 'maintenance',
      retryAfter: 30,
    });
    expect(error.isConfigurationError).toBe(false);
  });

  it.each([
    ['is not JSON', '{"access_token": '],
    ['lacks access_token', { token_type: 'Bearer', expires_in: 60 }],
    ['has an empty access_token', { access_token: '', expires_in: 60 }],
    ['is a JSON array', [1, 2]],
  ])('when a 200 answer %s, then invalid_response', async (_label, body) => {
    const { client } = await setUp((_req, res) => reply(res, 200, body));

    expect(await failure(client.clientCredentials())).toMatchObject({
      error: 'invalid_response',
      httpStatus: 200,
    });
  });

  it('when the answer is larger than the limit, then invalid_response and the body is not kept', async () => {
    const { client } = await setUp((_req, res) =>
      reply(res, 200, { access_token: 'x'.repeat(maxAnswerBytes + 1) }),
    );

    expect(await failure(client.clientCredentials())).toMatchObject({ error: 'invalid_response' });
  });

  it('when the server redirects, then the redirect is not followed and http_302 is thrown', async () => {
    const { server, client } = await setUp((_req, res) =>
      reply(res, 302, '', { location: 'http://127.0.0.1:9/steal' }),
    );

    expect(await failure(client.clientCredentials())).toMatchObject({ error: 'http_302' });
    expect(server.requests).toHaveLength(1);
  });

  it('when the server never answers, then timeout comes within the configured deadline', async () => {
    const { client } = await setUp(() => undefined, { timeoutMs: 300 });
    const began = performance.now();

    expect(await failure(client.clientCredentials())).toMatchObject({ error: 'timeout' });
    expect(performance.now() - began).toBeLessThan(2_000);
  });

  it('when the body drips forever, then the overall deadline cuts it', async () => {
    const { client } = await setUp(
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const timer = setInterval(() => res.write(' '), 50);
        res.on('close', () => clearInterval(timer));
      },
      { timeoutMs: 400 },
    );
    const began = performance.now();

    expect(await failure(client.clientCredentials())).toMatchObject({ error: 'timeout' });
    expect(performance.now() - began).toBeLessThan(2_000);
  });

  it('when nothing listens, then network', async () => {
    const { server, client } = await setUp(bearer(60));
    await server.close();

    expect(await failure(client.clientCredentials())).toMatchObject({ error: 'network' });
  });

  it('when requests fail and succeed, then neither the secret nor tokens reach the error or the log', async () => {
    const accessToken = mintToken('logged-access');
    const { client, config } = await setUp(bearer(60, accessToken));
    await client.clientCredentials();
    const { client: refused } = await setUp((_req, res) => reply(res, 401, { error: 'invalid_client' }), {
      clientSecret: config.clientSecret,
    });

    const error = await failure(refused.clientCredentials());

    expect(error.message).not.toContain(config.clientSecret);
    const logged = JSON.stringify(lines());
    expect(logged).toContain('"outcome":"invalid_client"');
    expect(logged).not.toContain(config.clientSecret);
    expect(logged).not.toContain(accessToken);
  });
});
