import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { base64url, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type DemoApi, startDemoApi } from '../../src/dev/demoApi.js';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { ed25519, encode, forge, hmac, junkSignature, type RawSigner } from '../support/jwtForgery.js';
import { encodings } from '../support/leaks.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

const origin = 'https://app.example.com';
const kid = 'broker-attack-1';
const goodHeader = { alg: 'EdDSA', kid, typ: 'client-token+jwt' };

let auth: TestAuthServer;
let api: ApiServer;
let demo: DemoApi;
let broker: OidcBroker;
/** The broker's own signing key: tokens it signs carry a valid signature, so each refusal is about one flaw. */
let ours: RawSigner;
let ourPublicJwk: JWK;
let attacker: { sign: RawSigner; publicJwk: JWK };
/** A real RFC 9068 access token from the oidc-provider, as the broker holds it. */
let upstreamToken: string;
/** Counts every request to the server that `jku` and `x5u` point at; it must stay at zero. */
let keyServer: { server: Server; url: string; requests: number };
/** Every token this suite sent; none may appear in an answer or a log line. */
const sent: string[] = [];

const now = () => Math.floor(Date.now() / 1000);
const goodClaims = () => ({
  iss: 'urn:token-broker',
  aud: 'urn:token-broker:proxy',
  sub: origin,
  origin,
  ip: '127.0.0.1',
  iat: now(),
  exp: now() + 900,
  jti: 'AAAAAAAAAAAAAAAAAAAAAA',
});
const claimsWith = (change: Record<string, unknown>) => ({ ...goodClaims(), ...change });
const claimsWithout = (name: string) => {
  const { [name as 'iss']: _removed, ...rest } = goodClaims();
  return rest;
};

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function send(
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string },
) {
  const answer = await request(`${broker.url}${path}`, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers ?? {},
    ...(options.body === undefined ? {} : { body: options.body }),
  });
  return { status: answer.statusCode, headers: answer.headers, body: await answer.body.text() } as Answer;
}

const viaBearer = (token: string) =>
  send('/api/proxy/things?x=1', { headers: { origin, authorization: `Bearer ${token}` } });
const viaHeader = (token: string) =>
  send('/api/proxy/things?x=1', { headers: { origin, 'x-client-token': token } });
const introspect = (token: string) =>
  send('/api/client-token/introspect', {
    method: 'POST',
    headers: { authorization: `Bearer ${broker.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
  });

const counters = () => ({ api: api.requests.length, tokenRequests: auth.tokenRequests() });

/** Fails when `text` holds any of `values` in a spelling the code could produce (plain, URL-encoded, base64). */
function expectNoLeak(text: string, values: readonly string[]) {
  for (const value of values) {
    for (const spelling of encodings(value)) {
      if (spelling.length >= 12) expect(text.includes(spelling), 'a token or secret was echoed').toBe(false);
    }
  }
}

function secrets(): string[] {
  return [broker.apiKey, auth.clientSecret, upstreamToken];
}

/** No answer carries the token it refused (not even one segment of it) or any secret of the broker. */
function expectNothingEchoed(answer: Answer, token: string) {
  const text = `${answer.body} ${JSON.stringify(answer.headers)}`;
  expectNoLeak(text, [...secrets(), token]);
  for (const segment of token.split('.')) if (segment.length >= 12) expect(text).not.toContain(segment);
}

function expectRefusedByProxy(answer: Answer, token: string) {
  expect(answer.status).toBe(401);
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(answer.body)).toMatchObject({ status: 401, code: 'invalid_client_token' });
  expect(answer.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  expect(answer.headers['cache-control']).toBe('no-store');
  expectNothingEchoed(answer, token);
}

/** Sends `token` both ways to the proxy and to introspection; none of it may reach the API or the upstream. */
async function expectRefusedEverywhere(token: string, ways: ('bearer' | 'header')[] = ['bearer', 'header']) {
  sent.push(registerSecret('attack token', token));
  const before = counters();
  if (ways.includes('bearer')) expectRefusedByProxy(await viaBearer(token), token);
  if (ways.includes('header')) expectRefusedByProxy(await viaHeader(token), token);
  const answer = await introspect(token);
  expect(answer.status).toBe(200);
  expect(JSON.parse(answer.body)).toEqual({ active: false });
  expectNothingEchoed(answer, token);
  expect(counters()).toEqual(before);
}

beforeAll(async () => {
  const pair = await generateKeyPair('EdDSA', { extractable: true });
  const privateJwk = { ...(await exportJWK(pair.privateKey)), kid, alg: 'EdDSA', use: 'sig' };
  registerSecret('proxy attack signing key', privateJwk.d ?? '');
  ours = ed25519((await importJWK(privateJwk, 'EdDSA')) as CryptoKey);
  const attackerPair = await generateKeyPair('EdDSA', { extractable: true });
  attacker = { sign: ed25519(attackerPair.privateKey), publicJwk: await exportJWK(attackerPair.publicKey) };

  keyServer = { server: createServer(), url: '', requests: 0 };
  keyServer.server.on('request', (_req, res) => {
    keyServer.requests += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [{ ...attacker.publicJwk, kid, alg: 'EdDSA', use: 'sig' }] }));
  });
  await new Promise<void>((resolve) => keyServer.server.listen(0, '127.0.0.1', resolve));
  keyServer.url = `http://127.0.0.1:${(keyServer.server.address() as AddressInfo).port}`;

  auth = await startTestAuthServer();
  api = await startEchoApi();
  demo = await startDemoApi({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.resource });
  broker = await startBroker({
    env: { SIGNING_KEYS: JSON.stringify({ keys: [privateJwk] }), UPSTREAM_API_URL: `${api.origin}/v1/` },
    upstream: auth,
  });
  ourPublicJwk = JSON.parse((await send('/.well-known/jwks.json', {})).body).keys[0] as JWK;

  const upstream = await send('/api/upstream-token', {
    headers: { authorization: `Bearer ${broker.apiKey}` },
  });
  upstreamToken = registerSecret(
    'real upstream access token',
    JSON.parse(upstream.body).access_token as string,
  );
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  await broker?.close();
  await demo?.close();
  await api?.close();
  await auth?.close();
  keyServer.server.closeAllConnections();
  await new Promise((resolve) => keyServer.server.close(resolve));
});

describe('controls: what an attack is measured against', () => {
  it('when a token forged with our key and good claims is sent, then the proxy forwards it and introspection finds it active', async () => {
    const token = registerSecret('forged good token', await forge(goodHeader, goodClaims(), ours));
    sent.push(token);
    const before = counters();
    const proxied = await viaBearer(token);
    expect(proxied.status).toBe(200);
    expect(JSON.parse(proxied.body)).toMatchObject({ url: '/v1/things?x=1' });
    expect(api.requests.length).toBe(before.api + 1);
    // The upstream token was cached when the suite read it: a proxied request costs no token request.
    expect(auth.tokenRequests()).toBe(before.tokenRequests);
    expect(JSON.parse((await introspect(token)).body)).toMatchObject({
      active: true,
      jti: 'AAAAAAAAAAAAAAAAAAAAAA',
    });
  });

  it('when a genuine client token is minted by the broker, then it is forwarded too', async () => {
    const minted = await send('/api/client-token', { headers: { origin } });
    const { token } = JSON.parse(minted.body) as { token: string };
    sent.push(registerSecret('minted client token', token));
    expect((await viaHeader(token)).status).toBe(200);
  });
});

describe('algorithm attacks', () => {
  it.each(['none', 'None', 'NONE', 'nOnE'])(
    'when alg is "%s" (empty or junk signature), then every route refuses it',
    async (alg) => {
      const header = encode(JSON.stringify({ ...goodHeader, alg }));
      await expectRefusedEverywhere(`${header}.${encode(JSON.stringify(goodClaims()))}.`);
      await expectRefusedEverywhere(await forge({ ...goodHeader, alg }, goodClaims(), junkSignature));
    },
  );

  it('when HS256 is signed with the public key (raw bytes, JWK or JWKS JSON) as the secret, then every route refuses it', async () => {
    const secrets = [
      base64url.decode(ourPublicJwk.x ?? ''),
      new TextEncoder().encode(JSON.stringify(ourPublicJwk)),
      new TextEncoder().encode(JSON.stringify({ keys: [ourPublicJwk] })),
    ];
    expect(ourPublicJwk.kid).toBe(kid);
    for (const secret of secrets) {
      await expectRefusedEverywhere(await forge({ ...goodHeader, alg: 'HS256' }, goodClaims(), hmac(secret)));
    }
  });

  it('when alg names another algorithm over our valid signature, then every route refuses it', async () => {
    for (const alg of ['ES256', 'RS256', 'Ed25519', 'eddsa']) {
      await expectRefusedEverywhere(await forge({ ...goodHeader, alg }, goodClaims(), ours));
    }
  });
});

describe('key selection attacks', () => {
  it.each([
    ['unknown', 'nope'],
    ['path-like', '../../../../etc/passwd'],
    ['a file URL', 'file:///dev/null'],
    ['a URL', 'http://127.0.0.1:1/keys'],
    ['prototype-named', '__proto__'],
  ])('when the kid is %s, then every route refuses it', async (_, badKid) => {
    await expectRefusedEverywhere(await forge({ ...goodHeader, kid: badKid }, goodClaims(), ours));
  });

  it('when jku, x5u, jwk or x5c name an attacker key, then every route refuses it and nothing is fetched', async () => {
    const embedded = { ...attacker.publicJwk, kid, alg: 'EdDSA' };
    const headers = [
      { ...goodHeader, jku: `${keyServer.url}/jwks.json` },
      { ...goodHeader, x5u: `${keyServer.url}/cert.pem` },
      { ...goodHeader, jwk: embedded },
      { ...goodHeader, x5c: ['MIIBszCCAVmgAwIBAgIUAttackerCertificate'] },
      { ...goodHeader, kid: 'attacker', jku: `${keyServer.url}/jwks.json`, jwk: embedded },
    ];
    for (const header of headers)
      await expectRefusedEverywhere(await forge(header, goodClaims(), attacker.sign));
    expect(keyServer.requests).toBe(0);
    // The key server does answer, so zero requests means it was never asked.
    expect((await request(`${keyServer.url}/jwks.json`)).statusCode).toBe(200);
    expect(keyServer.requests).toBe(1);
  });

  it('when another key signs under our kid, then every route refuses it', async () => {
    await expectRefusedEverywhere(await forge(goodHeader, goodClaims(), attacker.sign));
  });
});

describe('signature and payload tampering', () => {
  it('when the signature is empty, truncated or missing, then every route refuses it', async () => {
    const [head, body, signature = ''] = (await forge(goodHeader, goodClaims(), ours)).split('.');
    await expectRefusedEverywhere(`${head}.${body}.`);
    await expectRefusedEverywhere(`${head}.${body}.${signature.slice(0, -4)}`);
    await expectRefusedEverywhere(`${head}.${body}.${signature.slice(0, 12)}`);
    await expectRefusedEverywhere(`${head}.${body}`);
  });

  it('when the payload or the header is changed after signing, then every route refuses it', async () => {
    const [head, body, signature] = (await forge(goodHeader, goodClaims(), ours)).split('.');
    const otherOrigin = encode(JSON.stringify(claimsWith({ origin: 'https://evil.example' })));
    const longerLife = encode(JSON.stringify(claimsWith({ exp: now() + 800 })));
    await expectRefusedEverywhere(`${head}.${otherOrigin}.${signature}`);
    await expectRefusedEverywhere(`${head}.${longerLife}.${signature}`);
    await expectRefusedEverywhere(
      `${encode(JSON.stringify({ ...goodHeader, extra: 1 }))}.${body}.${signature}`,
    );
  });
});

describe('header anomalies', () => {
  it('when a crit header is present, then every route refuses it even with our signature', async () => {
    await expectRefusedEverywhere(
      await forge({ ...goodHeader, crit: ['exp'], exp: now() + 900 }, goodClaims(), ours),
    );
    await expectRefusedEverywhere(
      await forge({ ...goodHeader, crit: ['b64'], b64: false }, goodClaims(), ours),
    );
    await expectRefusedEverywhere(await forge({ ...goodHeader, crit: [] }, goodClaims(), ours));
  });

  it('when typ is missing or not ours, then every route refuses it even with our signature', async () => {
    const { typ: _typ, ...untyped } = goodHeader;
    await expectRefusedEverywhere(await forge(untyped, goodClaims(), ours));
    for (const typ of ['at+jwt', 'JWT', 'CLIENT-TOKEN+JWT', 'application/at+jwt']) {
      await expectRefusedEverywhere(await forge({ ...goodHeader, typ }, goodClaims(), ours));
    }
  });

  it('when a nested JWT is sent (cty JWT, or a JWT as the payload), then every route refuses it', async () => {
    const inner = await forge(goodHeader, goodClaims(), ours);
    await expectRefusedEverywhere(await forge({ ...goodHeader, cty: 'JWT' }, JSON.stringify(inner), ours));
    await expectRefusedEverywhere(await forge({ ...goodHeader, cty: 'JWT' }, goodClaims(), ours));
    await expectRefusedEverywhere(await forge(goodHeader, JSON.stringify(inner), ours));
  });
});

describe('claim anomalies signed with our own key', () => {
  it.each(['exp', 'iat', 'jti', 'iss', 'aud', 'origin'])(
    'when %s is missing, then every route refuses it',
    async (name) => {
      await expectRefusedEverywhere(await forge(goodHeader, claimsWithout(name), ours));
    },
  );

  it.each([
    ['exp is a string', () => claimsWith({ exp: String(now() + 900) })],
    ['iat is a string', () => claimsWith({ iat: String(now()) })],
    ['nbf is a string', () => claimsWith({ nbf: String(now()) })],
    ['exp is far in the future', () => claimsWith({ exp: now() + 10 * 365 * 86_400 })],
    ['iat is far in the future', () => claimsWith({ iat: now() + 3600, exp: now() + 4500 })],
    ['nbf is in the future', () => claimsWith({ nbf: now() + 60 })],
    ['exp is past beyond the tolerance', () => claimsWith({ iat: now() - 960, exp: now() - 60 })],
    ['exp - iat exceeds the maximum lifetime', () => claimsWith({ exp: now() + 86_400 })],
    ['exp is before iat', () => claimsWith({ exp: now() - 1 })],
    ['iss is another issuer', () => claimsWith({ iss: 'https://issuer.example' })],
    ['aud is another audience', () => claimsWith({ aud: 'https://api.example' })],
    [
      'aud is an array holding ours',
      () => claimsWith({ aud: ['urn:token-broker:proxy', 'https://api.example'] }),
    ],
  ])('when %s, then every route refuses it', async (_, claims) => {
    await expectRefusedEverywhere(await forge(goodHeader, claims(), ours));
  });

  it('when exp is a non-finite number written raw into the JSON (1e309), then every route refuses it', async () => {
    const json = JSON.stringify(goodClaims()).replace(/"exp":\d+/, '"exp":1e309');
    expect(json).toContain('"exp":1e309');
    await expectRefusedEverywhere(await forge(goodHeader, json, ours));
  });
});

describe('tokens that are not client tokens', () => {
  it('when a real upstream access token from the oidc-provider is presented as a client token, then every route refuses it', async () => {
    expect(upstreamToken.split('.')).toHaveLength(3);
    await expectRefusedEverywhere(upstreamToken);
  });

  it('when upstream access-token claims are signed with our key, then every route refuses them', async () => {
    const [, payload = ''] = upstreamToken.split('.');
    const claims = new TextDecoder().decode(base64url.decode(payload));
    await expectRefusedEverywhere(await forge({ ...goodHeader, typ: 'at+jwt' }, claims, ours));
    await expectRefusedEverywhere(await forge(goodHeader, claims, ours));
  });

  it('when a client token is presented to the protected API directly, then the API refuses it, while it accepts the upstream token', async () => {
    const minted = await send('/api/client-token', { headers: { origin } });
    const { token } = JSON.parse(minted.body) as { token: string };
    sent.push(registerSecret('minted client token', token));
    const call = (bearer: string) =>
      request(`${demo.url}hello`, { headers: { authorization: `Bearer ${bearer}` } });
    const refused = await call(token);
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    await refused.body.dump();
    const accepted = await call(upstreamToken);
    expect(accepted.statusCode).toBe(200);
    await accepted.body.dump();
  });
});

describe('malformed and oversized input', () => {
  it('when a token over the size limit carries our valid signature, then every route refuses it before any crypto', async () => {
    const verify = vi.spyOn(crypto.subtle, 'verify');
    await expectRefusedEverywhere(await forge(goodHeader, claimsWith({ pad: 'x'.repeat(4096) }), ours));
    await expectRefusedEverywhere(`${'a'.repeat(6000)}.${'b'.repeat(6000)}.${'c'.repeat(86)}`);
    expect(verify).not.toHaveBeenCalled();
    // The spy does see a verification, so "not called" above is meaningful. A token no earlier test sent:
    // one already verified would be answered from the verified-token cache, without crypto.
    const fresh = claimsWith({ jti: randomBytes(16).toString('base64url') });
    expect((await viaBearer(await forge(goodHeader, fresh, ours))).status).toBe(200);
    expect(verify).toHaveBeenCalled();
  });

  it('when a token is larger than the HTTP header limit, then the request is refused before the app runs and costs nothing', async () => {
    const token = registerSecret('huge token', `${'a'.repeat(20_000)}.${'b'.repeat(20_000)}.c`);
    const before = counters();
    // Node's parser answers 431 (max-http-header-size, 16 KiB) before Express or any of our code runs.
    expect((await viaHeader(token)).status).toBe(431);
    const introspected = await introspect(token);
    expect(introspected.status).toBe(413);
    expect(JSON.parse(introspected.body)).toMatchObject({ code: 'payload_too_large' });
    expectNothingEchoed(introspected, token);
    expect(counters()).toEqual(before);
  });

  it.each([
    ['standard base64 characters', 'ab+c.de/f.gh=='],
    ['padding', `${encode('{"alg":"EdDSA"}')}==.${encode('{}')}.c2lnbmF0dXJl`],
    ['non-ASCII', 'äbc.déf.ghï'],
    ['four segments', 'aaaa.bbbb.cccc.dddd'],
    ['one segment', 'eyJhbGciOiJFZERTQSJ9'],
    ['a JWE-shaped token', 'eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aaaa.bbbb.cccc'],
    ['a header that is not JSON', `${encode('hello world')}.${encode('{}')}.c2lnbmF0dXJl`],
    ['a header that is a JSON array', `${encode('[]')}.${encode('{}')}.c2lnbmF0dXJl`],
    ['a percent-encoded token', 'eyJhbGci%2E%2E.abc.def'],
  ])('when the token is garbage (%s), then every route refuses it', async (_, token) => {
    await expectRefusedEverywhere(token);
  });

  it('when the token holds whitespace, then the x-client-token header and introspection refuse it', async () => {
    await expectRefusedEverywhere('abc. def.ghi', ['header']);
  });
});

describe('what the broker kept', () => {
  it('when every attack was answered, then no log line holds any token sent and the process is healthy', async () => {
    expect(sent.length).toBeGreaterThan(60);
    const logged = JSON.stringify(broker.logs.lines());
    expectNoLeak(logged, [...sent, ...secrets()]);
    expect((await send('/healthz', {})).status).toBe(200);
  });
});
