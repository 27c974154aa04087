import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import {
  createDiscovery,
  isAcceptableTokenEndpoint,
  type MetadataGet,
  metadataUrls,
} from '../../src/upstream/discovery.js';
import { createTokenClient } from '../../src/upstream/tokenClient.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import {
  type Behaviour,
  type FakeTokenServer,
  reply,
  startFakeTokenServer,
  upstreamConfigFor,
} from '../support/oauthServers.js';
import { waitFor } from '../support/waiting.js';

const { logger } = captureLogs();
const servers: FakeTokenServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** A metadata server for `issuerPath`; `serve` decides which well-known documents exist and what they say. */
async function setUp(
  serve: (path: string, base: string) => { status: number; body?: unknown } | undefined,
  issuerPath = '',
) {
  let base = '';
  const behaviour: Behaviour = (req, res) => {
    const answer = serve(req.url, base) ?? { status: 404, body: { error: 'not_found' } };
    reply(res, answer.status, answer.body ?? {});
  };
  const server = await startFakeTokenServer(behaviour);
  servers.push(server);
  base = server.url;
  const issuer = `${server.url}${issuerPath}`;
  const client = createTokenClient({
    config: upstreamConfigFor(undefined, { issuer }),
    clock: systemClock,
    logger,
  });
  return { server, issuer, client };
}

const metadata = (issuer: string, tokenEndpoint = `${issuer}/token`) => ({
  status: 200,
  body: { issuer, token_endpoint: tokenEndpoint },
});

describe('metadata locations', () => {
  it('when the issuer has a path, then RFC 8414 inserts the well-known segment before it and OIDC appends it', () => {
    expect(metadataUrls('https://as.example.test/tenant/a/')).toEqual([
      'https://as.example.test/.well-known/oauth-authorization-server/tenant/a',
      'https://as.example.test/tenant/a/.well-known/openid-configuration',
    ]);
  });

  it('when the issuer has no path, then both documents sit at the root', () => {
    expect(metadataUrls('https://as.example.test')).toEqual([
      'https://as.example.test/.well-known/oauth-authorization-server',
      'https://as.example.test/.well-known/openid-configuration',
    ]);
  });

  it.each([
    ['https://as.example.test/token', true],
    ['http://127.0.0.1:8080/token', true],
    ['http://[::1]:8080/token', true],
    ['http://localhost/token', true],
    ['http://as.example.test/token', false],
    ['https://user:pw@as.example.test/token', false],
    ['ftp://as.example.test/token', false],
    ['not a url', false],
  ])('when the token endpoint is %s, then acceptable is %s', (url, acceptable) => {
    expect(isAcceptableTokenEndpoint(url)).toBe(acceptable);
  });
});

describe('discovery over HTTP', () => {
  it('when only the RFC 8414 document exists under a path issuer, then it is used', async () => {
    const { server, issuer, client } = await setUp(
      (path, base) =>
        path === '/.well-known/oauth-authorization-server/tenant' ? metadata(`${base}/tenant`) : undefined,
      '/tenant',
    );

    expect(await client.tokenEndpoint()).toBe(`${issuer}/token`);
    expect(server.requests.map((request) => request.url)).toEqual([
      '/.well-known/oauth-authorization-server/tenant',
    ]);
  });

  it('when only the OpenID document exists, then discovery falls back to it', async () => {
    const { server, issuer, client } = await setUp((path, base) =>
      path === '/.well-known/openid-configuration' ? metadata(base) : undefined,
    );

    expect(await client.tokenEndpoint()).toBe(`${issuer}/token`);
    expect(server.requests).toHaveLength(2);
  });

  it('when the metadata names another issuer, then invalid_response and the endpoint is not used (RFC 8414 §3.3)', async () => {
    const { client } = await setUp(() => metadata('https://evil.example.test'));

    await expect(client.tokenEndpoint()).rejects.toMatchObject({ error: 'invalid_response' });
  });

  it('when the token endpoint is plain http off loopback, then invalid_response', async () => {
    const { client } = await setUp((_path, base) => metadata(base, 'http://as.example.test/token'));

    await expect(client.tokenEndpoint()).rejects.toMatchObject({ error: 'invalid_response' });
  });

  it('when many callers ask at once, then one lookup serves them all and later calls use the cache', async () => {
    const { server, client } = await setUp((_path, base) => metadata(base));
    // The lookup is held at the server until every caller has asked.
    let answer = () => {};
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    server.setBehaviour(async (_req, res) => {
      await answered;
      reply(res, 200, metadata(server.url).body);
    });

    const lookups = Promise.all(Array.from({ length: 5 }, () => client.tokenEndpoint()));
    await waitFor(() => server.requests.length > 0);
    answer();
    const endpoints = await lookups;
    await client.tokenEndpoint();

    expect(new Set(endpoints)).toEqual(new Set([`${server.url}/token`]));
    expect(server.requests).toHaveLength(1);
  });

  it('when a lookup fails, then the next call tries again', async () => {
    const { server, client } = await setUp(() => ({ status: 500 }));

    await expect(client.tokenEndpoint()).rejects.toMatchObject({ error: 'http_500' });
    server.setBehaviour((_req, res) => reply(res, 200, metadata(server.url).body));

    expect(await client.tokenEndpoint()).toBe(`${server.url}/token`);
  });

  it('when the grant runs, then it posts to the discovered endpoint', async () => {
    const accessToken = registerSecret('discovered access token', 'discovered-access-token');
    const { server, client } = await setUp((path, base) => {
      if (path === '/.well-known/oauth-authorization-server')
        return metadata(base, `${base}/oauth2/v1/token`);
      return { status: 200, body: { access_token: accessToken, expires_in: 60 } };
    });

    expect((await client.clientCredentials()).accessToken).toBe(accessToken);
    expect(server.requests.map((request) => `${request.method} ${request.url}`)).toEqual([
      'GET /.well-known/oauth-authorization-server',
      'POST /oauth2/v1/token',
    ]);
  });
});

describe('mutual-TLS endpoint aliases (RFC 8705 §5)', () => {
  const issuer = 'https://as.example.test';
  const answering =
    (aliases: unknown): MetadataGet =>
    async () => ({
      status: 200,
      body: JSON.stringify({ issuer, token_endpoint: `${issuer}/token`, mtls_endpoint_aliases: aliases }),
    });

  it('when the metadata names a mutual-TLS token endpoint, then a client authenticating by certificate takes it and any other keeps token_endpoint', async () => {
    const get = answering({ token_endpoint: 'https://mtls.as.example.test/token' });
    expect(await createDiscovery({ issuer, get, logger, mtls: true }).tokenEndpoint()).toBe(
      'https://mtls.as.example.test/token',
    );
    expect(await createDiscovery({ issuer, get, logger }).tokenEndpoint()).toBe(`${issuer}/token`);
  });

  it('when the aliases are malformed or lack a token endpoint, then token_endpoint is used', async () => {
    for (const aliases of ['not-an-object', {}, { token_endpoint: 42 }]) {
      const discovery = createDiscovery({ issuer, get: answering(aliases), logger, mtls: true });
      expect(await discovery.tokenEndpoint()).toBe(`${issuer}/token`);
    }
  });

  it('when the alias is plain http off loopback, then invalid_response', async () => {
    const get = answering({ token_endpoint: 'http://mtls.as.example.test/token' });
    await expect(createDiscovery({ issuer, get, logger, mtls: true }).tokenEndpoint()).rejects.toMatchObject({
      error: 'invalid_response',
    });
  });
});
