import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  randomUUID,
} from 'node:crypto';
import { decodeProtectedHeader, type JWK, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/cli/jwks.js';
import { createManualClock } from '../../src/clock.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { BrokerError } from '../../src/errors.js';
import { cacheKey } from '../../src/upstream/cacheKey.js';
import {
  assertionLifetimeSeconds,
  clientAssertionType,
  parseClientKey,
} from '../../src/upstream/clientAssertion.js';
import { createTokenCache } from '../../src/upstream/tokenCache.js';
import { createTokenClient } from '../../src/upstream/tokenClient.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import {
  type Behaviour,
  type FakeTokenServer,
  mintToken,
  type RecordedRequest,
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

/** A private JWK as `token-broker keys generate` prints it (EdDSA, ES256), or an RSA one from node:crypto. */
async function privateJwk(alg: 'EdDSA' | 'ES256' | 'RS256'): Promise<JWK> {
  const jwk: JWK =
    alg === 'RS256'
      ? {
          ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
            format: 'jwk',
          }) as JWK),
          kid: `rsa-${randomUUID()}`,
        }
      : await generateSigningKey(alg);
  registerSecret(`client key ${alg}`, JSON.stringify(jwk));
  registerSecret(`client key ${alg} d`, jwk.d as string);
  return jwk;
}

function clientKeyOf(jwk: JWK) {
  const key = parseClientKey(JSON.stringify({ keys: [jwk] }));
  if (typeof key === 'string') throw new Error(key);
  return key;
}

/** The form or JSON fields of a recorded token request. */
function fieldsOf(request: RecordedRequest | undefined): Record<string, unknown> {
  if (!request) throw new Error('no request recorded');
  return request.headers['content-type'] === 'application/json'
    ? (JSON.parse(request.body) as Record<string, unknown>)
    : Object.fromEntries(new URLSearchParams(request.body));
}

function assertionOf(request: RecordedRequest | undefined): string {
  const assertion = fieldsOf(request).client_assertion;
  if (typeof assertion !== 'string') throw new Error('no client_assertion sent');
  return registerSecret('client assertion', assertion);
}

const bearer: Behaviour = (_req, res) =>
  reply(res, 200, { access_token: mintToken('pkjwt-access'), token_type: 'Bearer', expires_in: 300 });

async function setUp(
  jwk: JWK,
  behaviour: Behaviour,
  overrides: Parameters<typeof upstreamConfigFor>[1] = {},
) {
  const server = await startFakeTokenServer(behaviour);
  servers.push(server);
  const config = upstreamConfigFor(server.tokenUrl, {
    clientId: 'pkjwt-client',
    clientSecret: '',
    authMethod: 'private_key_jwt',
    clientKey: clientKeyOf(jwk),
    ...overrides,
  });
  const clock = createManualClock(start);
  return { server, config, clock, client: createTokenClient({ config, clock, logger }) };
}

describe('private_key_jwt on the wire (RFC 7523 §2.2)', () => {
  it.each(['ES256', 'EdDSA', 'RS256'] as const)(
    'when the client key is %s, then the form carries a signed assertion with the exact claims and no secret',
    async (alg) => {
      const jwk = await privateJwk(alg);
      const { server, client } = await setUp(jwk, bearer);
      await client.clientCredentials();

      const request = server.requests[0];
      expect(request?.headers.authorization).toBeUndefined();
      const fields = fieldsOf(request);
      expect(fields).toMatchObject({
        grant_type: 'client_credentials',
        client_id: 'pkjwt-client',
        client_assertion_type: clientAssertionType,
      });
      expect(fields).not.toHaveProperty('client_secret');
      const assertion = assertionOf(request);
      expect(decodeProtectedHeader(assertion)).toEqual({ alg, typ: 'JWT', kid: jwk.kid });
      const publicKey = createPublicKey(createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' }));
      const { payload } = await jwtVerify(assertion, publicKey, {
        currentDate: new Date(start),
      });
      const iat = start / 1000;
      expect(payload).toEqual({
        iss: 'pkjwt-client',
        sub: 'pkjwt-client',
        aud: server.tokenUrl,
        iat,
        exp: iat + assertionLifetimeSeconds,
        jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      });
    },
  );

  it('when the json profile is used, then the assertion and its type travel in the JSON body, without a secret', async () => {
    const { server, client } = await setUp(await privateJwk('ES256'), bearer, {
      profile: 'json',
      audience: 'https://api.example.test',
    });
    await client.clientCredentials();
    const fields = fieldsOf(server.requests[0]);
    expect(server.requests[0]?.headers['content-type']).toBe('application/json');
    expect(fields).toMatchObject({
      grant_type: 'client_credentials',
      audience: 'https://api.example.test',
      client_id: 'pkjwt-client',
      client_assertion_type: clientAssertionType,
    });
    expect(fields).not.toHaveProperty('client_secret');
    expect(assertionOf(server.requests[0]).split('.')).toHaveLength(3);
  });

  it('when a refresh grant runs, then it authenticates with its own fresh assertion too', async () => {
    const { server, client } = await setUp(await privateJwk('ES256'), bearer);
    await client.clientCredentials();
    await client.refresh(registerSecret('pkjwt refresh token', `refresh-${randomUUID()}`));
    expect(fieldsOf(server.requests[1])).toMatchObject({
      grant_type: 'refresh_token',
      client_assertion_type: clientAssertionType,
    });
    const [first, second] = [assertionOf(server.requests[0]), assertionOf(server.requests[1])];
    expect(first).not.toBe(second);
  });

  it('when the cache retries after two failures, then each of the 3 attempts carries a new jti, so a replay-checking server accepts the third', async () => {
    const seen = new Set<string>();
    let attempts = 0;
    // Like a real server: a jti is accepted once (RFC 7523 §3 item 7); the first two attempts fail anyway.
    const replayChecking: Behaviour = async (req, res) => {
      attempts += 1;
      const assertion = assertionOf(req);
      const { jti } = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString()) as {
        jti: string;
      };
      if (seen.has(jti))
        return reply(res, 401, { error: 'invalid_client', error_description: 'jti replayed' });
      seen.add(jti);
      if (attempts < 3) return reply(res, 503, { error: 'temporarily_unavailable' });
      return bearer(req, res);
    };
    const { server, config, clock, client } = await setUp(await privateJwk('EdDSA'), replayChecking);
    const cache = createTokenCache({ client, config, clock, logger, random: () => 0 });

    for (let attempt = 1; attempt <= 2; attempt += 1) {
      const error = await cache.get().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(BrokerError);
      clock.advance(1_000);
    }
    const token = await cache.get();
    cache.close();

    expect(token.accessToken).toMatch(/^pkjwt-access-/);
    expect(server.requests).toHaveLength(3);
    expect(seen.size).toBe(3);
  });

  it('when the client key rotates, then the cache key changes; the (unused) secret does not enter it', async () => {
    const [one, two] = [clientKeyOf(await privateJwk('ES256')), clientKeyOf(await privateJwk('ES256'))];
    const base = {
      tokenEndpoint: 'https://as.example.test/token',
      clientId: 'pkjwt-client',
      authMethod: 'private_key_jwt',
      profile: 'rfc6749',
      scope: undefined,
      audience: undefined,
      resource: undefined,
      secret: '',
    };
    const keyOne = cacheKey({ ...base, clientKeyThumbprint: one.thumbprint });
    expect(cacheKey({ ...base, clientKeyThumbprint: two.thumbprint })).not.toBe(keyOne);
    expect(cacheKey({ ...base, secret: 'ignored-secret', clientKeyThumbprint: one.thumbprint })).toBe(keyOne);
    expect(cacheKey(base)).not.toBe(keyOne);
  });

  it('when the assertions were sent, then no log line holds one or any part of the key', () => {
    const text = JSON.stringify(lines());
    expect(lines().length).toBeGreaterThan(0);
    expect(text).not.toContain('client_assertion');
    expect(text).not.toMatch(/"d":/);
  });
});

describe('UPSTREAM_CLIENT_KEY', () => {
  it('when the key comes from `token-broker keys generate`, then its thumbprint is the RFC 7638 kid the CLI chose', async () => {
    const jwk = await privateJwk('EdDSA');
    const key = clientKeyOf(jwk);
    expect(key).toMatchObject({ alg: 'EdDSA', kid: jwk.kid, thumbprint: jwk.kid });
    expect(JSON.stringify(key)).not.toContain(jwk.d as string);
  });

  it('when the key is public, symmetric, on another curve, too short or claims another alg, then it is refused by name', async () => {
    const es256 = await privateJwk('ES256');
    const { d: _d, ...publicPart } = es256;
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' });
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'jwk' });
    const cases: [unknown, RegExp][] = [
      ['not json', /must be a private JWK/],
      [publicPart, /must be a private key/],
      [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA' }, /shared secret/],
      [p384, /P-256/],
      [rsa1024, /2048 bits/],
      [{ ...es256, alg: 'RS256' }, /alg must be ES256/],
    ];
    for (const [value, message] of cases) {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      expect(parseClientKey(text)).toMatch(message);
    }
  });

  const env = (extra: Record<string, string>) => ({
    UPSTREAM_TOKEN_URL: 'https://as.example.test/oauth/token',
    UPSTREAM_CLIENT_ID: 'pkjwt-client',
    ...extra,
  });
  const problemsOf = (run: () => unknown): string[] => {
    try {
      run();
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  };

  it('when private_key_jwt is chosen, then the key comes from UPSTREAM_CLIENT_KEY_FILE and no secret is needed', async () => {
    const jwk = await privateJwk('ES256');
    const config = loadConfig(
      env({ UPSTREAM_AUTH_METHOD: 'private_key_jwt', UPSTREAM_CLIENT_KEY_FILE: '/run/secrets/client-key' }),
      { readFile: (path) => (path === '/run/secrets/client-key' ? JSON.stringify({ keys: [jwk] }) : '') },
    );
    expect(config.upstreams[0]?.config).toMatchObject({
      authMethod: 'private_key_jwt',
      clientSecret: '',
      clientAssertionAudience: 'token_endpoint',
      clientKey: { alg: 'ES256', kid: jwk.kid },
    });
  });

  it('when the method, key, profile or audience do not fit together, then each problem is named without echoing the key', async () => {
    const jwk = await privateJwk('ES256');
    const keyText = JSON.stringify(jwk);
    expect(problemsOf(() => loadConfig(env({ UPSTREAM_AUTH_METHOD: 'private_key_jwt' })))).toEqual([
      expect.stringMatching(/^UPSTREAM_CLIENT_KEY: required with UPSTREAM_AUTH_METHOD=private_key_jwt/),
    ]);
    expect(
      problemsOf(() =>
        loadConfig(
          env({
            UPSTREAM_AUTH_METHOD: 'private_key_jwt',
            UPSTREAM_CLIENT_KEY: keyText,
            UPSTREAM_PROFILE: 'bloq',
            UPSTREAM_CLIENT_ASSERTION_AUDIENCE: 'issuer',
          }),
        ),
      ),
    ).toEqual([
      expect.stringMatching(
        /^UPSTREAM_AUTH_METHOD: private_key_jwt is not possible with UPSTREAM_PROFILE=bloq/,
      ),
      'UPSTREAM_CLIENT_ASSERTION_AUDIENCE: "issuer" needs UPSTREAM_ISSUER, e.g. UPSTREAM_ISSUER=https://auth.example.com',
    ]);
    expect(
      problemsOf(() => loadConfig(env({ UPSTREAM_CLIENT_SECRET: 'a-secret', UPSTREAM_CLIENT_KEY: keyText }))),
    ).toEqual([
      expect.stringMatching(/^UPSTREAM_CLIENT_KEY: only used with UPSTREAM_AUTH_METHOD=private_key_jwt/),
    ]);
    const broken = problemsOf(() =>
      loadConfig(
        env({ UPSTREAM_AUTH_METHOD: 'private_key_jwt', UPSTREAM_CLIENT_KEY: keyText.replace('"d"', '"dd"') }),
      ),
    );
    expect(broken).toEqual([
      'UPSTREAM_CLIENT_KEY: must be a private key (the JWK has no "d"), e.g. UPSTREAM_CLIENT_KEY="$(npx token-broker keys generate --alg ES256)"',
    ]);
    expect(broken.join('\n')).not.toContain(jwk.d as string);
  });
});
