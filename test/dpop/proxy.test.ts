import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiBroker, appOrigin, startBroker } from '../support/broker.js';
import {
  ath,
  dpopEnv,
  dpopToken,
  makeProof,
  type ProofKey,
  proofKey,
  unsignedProof,
} from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';

let broker: ApiBroker;
beforeAll(async () => {
  broker = await startBroker({ api: 'verifying', env: dpopEnv });
});
afterAll(async () => {
  await broker?.close();
});

const now = () => Math.floor(Date.now() / 1000);
const helloUrl = () => `${broker.url}/api/proxy/hello`;

function callApi(headers: Record<string, string>, { method = 'GET', query = '' } = {}) {
  return fetch(`${helloUrl()}${query}`, { method, headers: { origin: appOrigin, ...headers } });
}

async function expectProofRefused(
  response: Response,
  apiCallsBefore: number,
  detail?: string,
): Promise<void> {
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toBe(
    'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"',
  );
  const body = (await response.json()) as { code: string; detail: string };
  expect(body.code).toBe('invalid_dpop_proof');
  if (detail !== undefined) expect(body.detail).toContain(detail);
  expect(broker.api.requests.length).toBe(apiCallsBefore);
}

describe('DPoP-bound client tokens at /api/client-token', () => {
  it('when a token is asked with a good proof, then it is minted DPoP with cnf.jkt of the proof key', async () => {
    const key = await proofKey();
    const token = await dpopToken(broker, key);
    expect(decodeJwt(token).cnf).toEqual({ jkt: key.jkt });
  });

  it('when an EdDSA proof is sent, then the token is bound to that Ed25519 key', async () => {
    const key = await proofKey('EdDSA');
    expect(decodeJwt(await dpopToken(broker, key)).cnf).toEqual({ jkt: key.jkt });
  });

  it('when CLIENT_TOKEN_BINDING=dpop and no proof comes, then 400 invalid_dpop_proof and no token', async () => {
    const response = await fetch(`${broker.url}/api/client-token`, {
      method: 'POST',
      headers: { origin: appOrigin },
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/);
    const body = (await response.json()) as { code: string; token?: string };
    expect(body.code).toBe('invalid_dpop_proof');
    expect(body.token).toBeUndefined();
  });

  it('when the token proof names another URL or carries a stale iat, then 400 invalid_dpop_proof', async () => {
    const key = await proofKey();
    const htu = `${broker.url}/api/client-token`;
    for (const proof of [
      await makeProof(key, { htm: 'POST', htu: `${broker.url}/api/auth/claim` }),
      await makeProof(key, { htm: 'GET', htu }),
      await makeProof(key, { htm: 'POST', htu, iat: now() - 300 }),
    ]) {
      const response = await fetch(htu, { method: 'POST', headers: { origin: appOrigin, dpop: proof } });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { code: string }).code).toBe('invalid_dpop_proof');
    }
  });

  it('when a DPoP-bound token is introspected, then it is active with token_type DPoP and its cnf.jkt', async () => {
    const key = await proofKey();
    const token = await dpopToken(broker, key);
    const response = await fetch(`${broker.url}/api/client-token/introspect`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${broker.apiKey}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }),
    });
    expect(await response.json()).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: key.jkt } });
  });

  it('when binding is none, then a request without a proof gets a Bearer token and one with a proof a DPoP token', async () => {
    const plain = await startBroker({
      api: 'verifying',
      env: { ...dpopEnv, CLIENT_TOKEN_BINDING: 'none' },
      upstream: broker.auth,
    });
    const bearer = await fetch(`${plain.url}/api/client-token`, {
      method: 'POST',
      headers: { origin: appOrigin },
    });
    const body = (await bearer.json()) as { token: string; tokenType: string };
    registerSecret('bearer client token', body.token);
    expect(body.tokenType).toBe('Bearer');
    expect(decodeJwt(body.token).cnf).toBeUndefined();
    const key = await proofKey();
    expect(decodeJwt(await dpopToken(plain, key)).cnf).toEqual({ jkt: key.jkt });
  });
});

describe('DPoP-bound client tokens on the proxy', () => {
  let key: ProofKey;
  let token: string;
  beforeAll(async () => {
    key = await proofKey();
    token = await dpopToken(broker, key);
  });

  const noneHeader = () => ({ typ: 'dpop+jwt', alg: 'none', jwk: key.jwk });
  const proofClaims = () => ({
    jti: randomBytes(16).toString('base64url'),
    htm: 'GET',
    htu: helloUrl(),
    iat: now(),
    ath: ath(token),
  });

  const goodProof = (overrides: Partial<Parameters<typeof makeProof>[1]> = {}) =>
    makeProof(key, { htm: 'GET', htu: helloUrl(), ath: ath(token), ...overrides });

  it('when the token comes as Authorization: DPoP with a fresh proof, then the API answers and never sees the proof', async () => {
    const before = broker.api.requests.length;
    const response = await callApi(
      { authorization: `DPoP ${token}`, dpop: await goodProof() },
      { query: '?q=1' },
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as { hello: string; headers: string[] };
    expect(body.hello).toBe('from the API');
    expect(broker.api.requests.length).toBe(before + 1);
    const seen = broker.api.requests.at(-1);
    expect(seen?.headers.dpop).toBeUndefined();
    expect(seen?.headers.authorization).toMatch(/^Bearer /);
    expect(seen?.headers.authorization).not.toContain(token);
  });

  it('when the token comes in x-client-token with a DPoP header, then it is accepted too', async () => {
    const response = await callApi({ 'x-client-token': token, dpop: await goodProof() });
    expect(response.status).toBe(200);
  });

  it('when the method is POST, then a proof made for POST works and one for GET does not', async () => {
    const good = await callApi(
      { authorization: `DPoP ${token}`, dpop: await goodProof({ htm: 'POST' }) },
      { method: 'POST' },
    );
    expect(good.status).toBe(200);
    const before = broker.api.requests.length;
    const bad = await callApi(
      { authorization: `DPoP ${token}`, dpop: await goodProof() },
      { method: 'POST' },
    );
    await expectProofRefused(bad, before);
  });

  it('when a proof is used twice, then the second use is refused as a replay', async () => {
    const proof = await goodProof();
    expect((await callApi({ authorization: `DPoP ${token}`, dpop: proof })).status).toBe(200);
    const before = broker.api.requests.length;
    await expectProofRefused(
      await callApi({ authorization: `DPoP ${token}`, dpop: proof }),
      before,
      'used before',
    );
  });

  // Each row is one way to get a proof wrong; every one must be refused before the API is called.
  const badProofs: [string, string, () => Promise<Record<string, string>>][] = [
    ['no DPoP header', 'send a DPoP proof', async () => ({ authorization: `DPoP ${token}` })],
    [
      'the bound token sent as Bearer',
      'sent as Authorization: DPoP',
      async () => ({ authorization: `Bearer ${token}`, dpop: await goodProof() }),
    ],
    [
      'a proof for another method',
      'another method',
      async () => ({ authorization: `DPoP ${token}`, dpop: await goodProof({ htm: 'DELETE' }) }),
    ],
    [
      'a proof for another path',
      'another URL',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: await goodProof({ htu: `${broker.url}/api/proxy/other` }),
      }),
    ],
    [
      'a proof for another host',
      'another URL',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: await goodProof({ htu: helloUrl().replace('127.0.0.1', 'localhost') }),
      }),
    ],
    [
      'a stale iat',
      'too old',
      async () => ({ authorization: `DPoP ${token}`, dpop: await goodProof({ iat: now() - 90 }) }),
    ],
    [
      'an iat in the future',
      'in the future',
      async () => ({ authorization: `DPoP ${token}`, dpop: await goodProof({ iat: now() + 90 }) }),
    ],
    [
      'the ath of another token',
      'another access token',
      async () => ({ authorization: `DPoP ${token}`, dpop: await goodProof({ ath: ath(`${token}x`) }) }),
    ],
    [
      'no ath',
      'another access token',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: await makeProof(key, { htm: 'GET', htu: helloUrl() }),
      }),
    ],
    [
      'a proof by another key than cnf.jkt',
      'another key',
      async () => {
        const other = await proofKey();
        return {
          authorization: `DPoP ${token}`,
          dpop: await makeProof(other, { htm: 'GET', htu: helloUrl(), ath: ath(token) }),
        };
      },
    ],
    [
      'a signature by another key than the embedded jwk',
      'does not verify',
      async () => {
        const other = await proofKey();
        return { authorization: `DPoP ${token}`, dpop: await goodProof({ signWith: other.privateKey }) };
      },
    ],
    [
      'alg none (empty signature)',
      'not one compact JWS',
      async () => ({ authorization: `DPoP ${token}`, dpop: unsignedProof(noneHeader(), proofClaims()) }),
    ],
    [
      'alg none with a signature part',
      'must be signed with ES256 or EdDSA',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: `${unsignedProof(noneHeader(), proofClaims())}AAAA`,
      }),
    ],
    [
      'alg HS256',
      'must be signed with ES256 or EdDSA',
      async () => {
        const secret = randomBytes(32);
        registerSecret('hs256 proof secret', secret.toString('base64url'));
        const proof = await new SignJWT({
          jti: randomBytes(16).toString('base64url'),
          htm: 'GET',
          htu: helloUrl(),
          iat: now(),
          ath: ath(token),
        })
          .setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: key.jwk })
          .sign(secret);
        return { authorization: `DPoP ${token}`, dpop: proof };
      },
    ],
    [
      'private key material in the jwk',
      'private key material',
      async () => {
        const { privateKey } = await generateKeyPair('ES256', { extractable: true });
        const privateJwk = await exportJWK(privateKey);
        registerSecret('proof private key', privateJwk.d ?? '');
        const leaky: ProofKey = {
          privateKey,
          jwk: privateJwk,
          jkt: await calculateJwkThumbprint(privateJwk, 'sha256'),
        };
        return {
          authorization: `DPoP ${token}`,
          dpop: await makeProof(leaky, { htm: 'GET', htu: helloUrl(), ath: ath(token) }),
        };
      },
    ],
    [
      'no typ',
      'typ must be dpop+jwt',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: await goodProof({ header: { alg: 'ES256', jwk: key.jwk } }),
      }),
    ],
    [
      'typ JWT',
      'typ must be dpop+jwt',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: await goodProof({ header: { typ: 'JWT', alg: 'ES256', jwk: key.jwk } }),
      }),
    ],
    [
      'no jwk',
      'no jwk',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: await goodProof({ header: { typ: 'dpop+jwt', alg: 'ES256' } }),
      }),
    ],
    [
      // What the broker sees of two DPoP fields: Node joins repeated fields with a comma.
      'two proofs in one DPoP field',
      'not one compact JWS',
      async () => ({
        authorization: `DPoP ${token}`,
        dpop: `${await goodProof()}, ${await goodProof()}`,
      }),
    ],
  ];

  it.each(badProofs)(
    'when the call has %s, then 401 invalid_dpop_proof (%s) and the API is not called',
    async (_name, detail, build) => {
      const headers = await build();
      const before = broker.api.requests.length;
      await expectProofRefused(await callApi(headers), before, detail);
    },
  );

  it('when a refused proof is then sent right, then its jti was not used up by the refusal', async () => {
    const jti = randomBytes(16).toString('base64url');
    const before = broker.api.requests.length;
    const wrong = await callApi({
      authorization: `DPoP ${token}`,
      dpop: await goodProof({ jti, htm: 'PUT' }),
    });
    await expectProofRefused(wrong, before);
    const right = await callApi({ authorization: `DPoP ${token}`, dpop: await goodProof({ jti }) });
    expect(right.status).toBe(200);
  });

  it('when the preflight asks for the dpop header, then CORS allows it on both routes', async () => {
    for (const path of ['/api/client-token', '/api/proxy/hello']) {
      const response = await fetch(`${broker.url}${path}`, {
        method: 'OPTIONS',
        headers: {
          origin: appOrigin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'dpop',
        },
      });
      expect(response.headers.get('access-control-allow-headers') ?? '').toContain('dpop');
    }
  });
});
