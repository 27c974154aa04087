import { calculateJwkThumbprint, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { BrokerError } from '../../src/errors.js';
import { createClientTokens } from '../../src/signing/clientTokens.js';
import { loadSigningKeys } from '../../src/signing/keys.js';
import { captureLogs } from '../support/logs.js';
import { clientTokenConfig as config, privateJwk, secretJwk } from '../support/signingKeys.js';

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof Error)) throw new Error('expected the promise to reject with an Error');
  return error;
}

const jwks = (...keys: JWK[]) => ({ keys: keys as Record<string, unknown>[] });

async function mintAndVerify(signWith: JWK[], verifyWith: JWK[]) {
  const { logger } = captureLogs();
  const clock = createManualClock();
  const signing = await loadSigningKeys({ jwks: jwks(...signWith), production: true, logger });
  const verifying = await loadSigningKeys({ jwks: jwks(...verifyWith), production: true, logger });
  const { token } = await createClientTokens({ keys: signing, config, clock }).mint({
    sub: 'https://app.example.com',
    origin: 'https://app.example.com',
  });
  return createClientTokens({ keys: verifying, config, clock }).verify(token);
}

describe('loadSigningKeys', () => {
  it('when an Ed25519 key is given, then it signs with EdDSA and publishes only its public part', async () => {
    const { logger, lines } = captureLogs();
    const jwk = await privateJwk('EdDSA', 'ed-1');
    const keys = await loadSigningKeys({ jwks: jwks(jwk), production: true, logger });
    expect(keys.signer).toMatchObject({ kid: 'ed-1', alg: 'EdDSA' });
    expect(keys.signer.key.type).toBe('private');
    expect(keys.verificationKey('ed-1')?.key.type).toBe('public');
    expect(keys.publicJwks).toEqual({
      keys: [{ kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: 'ed-1', alg: 'EdDSA', use: 'sig' }],
    });
    expect(lines()).toEqual([]);
  });

  it('when a P-256 key is given, then it signs with ES256 and publishes x and y only', async () => {
    const { logger } = captureLogs();
    const jwk = await privateJwk('ES256', 'ec-1');
    const keys = await loadSigningKeys({ jwks: jwks(jwk), production: true, logger });
    expect(keys.signer).toMatchObject({ kid: 'ec-1', alg: 'ES256' });
    expect(keys.publicJwks.keys).toEqual([
      { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ]);
    expect(await mintAndVerify([jwk], [jwk])).toMatchObject({ origin: 'https://app.example.com' });
  });

  it('when an HS256 secret is given, then it signs, is not published and a warning says verifiers need it', async () => {
    const { logger, lines } = captureLogs();
    const jwk = secretJwk('hs-1');
    const keys = await loadSigningKeys({ jwks: jwks(jwk), production: true, logger });
    expect(keys.signer).toMatchObject({ kid: 'hs-1', alg: 'HS256' });
    expect(keys.publicJwks.keys).toEqual([]);
    const warning = lines().find((line) => line.level === 'warn');
    expect(warning?.msg).toMatch(/HS256.*shared secret.*not published/);
    expect(warning?.kid).toBe('hs-1');
    expect(await mintAndVerify([jwk], [jwk])).toMatchObject({ sub: 'https://app.example.com' });
  });

  it('when a key has no kid, then its RFC 7638 thumbprint becomes the kid', async () => {
    const { logger } = captureLogs();
    const jwk = await privateJwk('EdDSA');
    const keys = await loadSigningKeys({ jwks: jwks(jwk), production: true, logger });
    const thumbprint = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x ?? '' });
    expect(keys.signer.kid).toBe(thumbprint);
    expect(keys.publicJwks.keys[0]?.kid).toBe(thumbprint);
  });

  it('when several keys are given, then the first signs and every one verifies', async () => {
    const { logger } = captureLogs();
    const a = await privateJwk('EdDSA', 'a');
    const b = await privateJwk('ES256', 'b');
    const keys = await loadSigningKeys({ jwks: jwks(b, a), production: true, logger });
    expect(keys.signer.kid).toBe('b');
    expect(keys.verificationKey('a')?.alg).toBe('EdDSA');
    expect(keys.verificationKey('b')?.alg).toBe('ES256');
    expect(keys.verificationKey('c')).toBeUndefined();
    expect(keys.publicJwks.keys.map((key) => key.kid)).toEqual(['b', 'a']);
  });

  it('when keys are published, then no private member (d, k) appears in the JWKS', async () => {
    const { logger } = captureLogs();
    const ed = await privateJwk('EdDSA', 'ed');
    const ec = await privateJwk('ES256', 'ec');
    const hs = secretJwk('hs');
    const keys = await loadSigningKeys({ jwks: jwks(ed, ec, hs), production: true, logger });
    const published = JSON.stringify(keys.publicJwks);
    for (const secret of [ed.d, ec.d, hs.k]) expect(published).not.toContain(secret);
    for (const key of keys.publicJwks.keys) {
      expect(Object.keys(key).sort()).toEqual(
        (key.kty === 'EC'
          ? ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']
          : ['alg', 'crv', 'kid', 'kty', 'use', 'x']
        ).sort(),
      );
    }
  });

  it('when production has no key set, then loading throws', async () => {
    const { logger } = captureLogs();
    await expect(loadSigningKeys({ jwks: undefined, production: true, logger })).rejects.toThrow(
      /SIGNING_KEYS is required in production/,
    );
  });

  it('when development has no key set, then an ephemeral Ed25519 key signs and a warning says so', async () => {
    const { logger, lines } = captureLogs();
    const keys = await loadSigningKeys({ jwks: undefined, production: false, logger });
    expect(keys.signer.alg).toBe('EdDSA');
    expect(keys.publicJwks.keys).toHaveLength(1);
    expect(keys.publicJwks.keys[0]).not.toHaveProperty('d');
    const warning = lines().find((line) => line.level === 'warn');
    expect(warning?.msg).toMatch(/ephemeral.*will not survive a restart.*replicas will not agree/);
    const { token } = await createClientTokens({ keys, config, clock: createManualClock() }).mint({
      sub: 's',
      origin: 'https://app.example.com',
    });
    expect(token.split('.')).toHaveLength(3);
  });
});

describe('key rotation', () => {
  it('when a token was minted with [A] and the set is now [B, A], then it still verifies', async () => {
    const a = await privateJwk('EdDSA', 'a');
    const b = await privateJwk('EdDSA', 'b');
    await expect(mintAndVerify([a], [b, a])).resolves.toMatchObject({ origin: 'https://app.example.com' });
  });

  it('when a token was minted by B with the set [B, A], then it verifies', async () => {
    const a = await privateJwk('EdDSA', 'a');
    const b = await privateJwk('ES256', 'b');
    await expect(mintAndVerify([b, a], [b, a])).resolves.toMatchObject({ sub: 'https://app.example.com' });
  });

  it('when a token comes from a key that is not in the set, then it is refused', async () => {
    const a = await privateJwk('EdDSA', 'a');
    const b = await privateJwk('EdDSA', 'b');
    const c = await privateJwk('EdDSA', 'c');
    const error = await failure(mintAndVerify([c], [b, a]));
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as BrokerError).code).toBe('invalid_client_token');
  });
});

describe('bad key sets', () => {
  const fakeD = 'bm90LWEtcmVhbC1wcml2YXRlLWtleS1qdXN0LWZpbGxlcg';

  it.each([
    [
      'an RSA key',
      { kty: 'RSA', n: 'AQAB', e: 'AQAB', d: fakeD, kid: 'r' },
      /#0 \(kid "r"\): RSA keys are not supported/,
    ],
    [
      'a P-384 key',
      { kty: 'EC', crv: 'P-384', x: 'AA', y: 'AA', d: fakeD },
      /#0: EC keys must use the P-256 curve/,
    ],
    [
      'an X25519 key',
      { kty: 'OKP', crv: 'X25519', x: 'AA', d: fakeD },
      /#0: OKP keys must use the Ed25519 curve/,
    ],
    ['an unknown kty', { kty: 'foo', d: fakeD }, /#0: "kty" must be/],
    [
      'a short HS256 secret',
      { kty: 'oct', k: fakeD.slice(0, 20), kid: 'short' },
      /"short"\): an HS256 secret must be at least 256 bits/,
    ],
    ['an HS256 secret that is not base64url', { kty: 'oct', k: `${fakeD}+/==` }, /#0: "k" is not base64url/],
    ['a "use" other than sig', { kty: 'oct', k: fakeD, use: 'enc' }, /#0: "use" must be "sig"/],
    ['an empty kid', { kty: 'oct', k: fakeD, kid: '' }, /#0 \(kid ""\): "kid" must be a non-empty string/],
  ])('when the set holds %s, then loading names the key and the problem', async (_, jwk, message) => {
    const { logger } = captureLogs();
    const error = await failure(loadSigningKeys({ jwks: jwks(jwk as JWK), production: true, logger }));
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain(fakeD.slice(0, 20));
  });

  it('when a key is public only, then loading says a private key is required', async () => {
    const { logger } = captureLogs();
    const { d: _d, ...publicOnly } = await privateJwk('EdDSA', 'pub');
    await expect(loadSigningKeys({ jwks: jwks(publicOnly), production: true, logger })).rejects.toThrow(
      /#0 \(kid "pub"\): is a public key; a private key \(with "d"\) is required/,
    );
  });

  it('when a key declares an alg that does not fit its type, then loading refuses it', async () => {
    const { logger } = captureLogs();
    const jwk = { ...(await privateJwk('EdDSA', 'ed')), alg: 'ES256' };
    await expect(loadSigningKeys({ jwks: jwks(jwk), production: true, logger })).rejects.toThrow(
      /#0 \(kid "ed"\): "alg" must be EdDSA/,
    );
  });

  it('when two keys share a kid, then loading names the second one', async () => {
    const { logger } = captureLogs();
    const first = await privateJwk('EdDSA', 'same');
    const second = await privateJwk('ES256', 'same');
    await expect(loadSigningKeys({ jwks: jwks(first, second), production: true, logger })).rejects.toThrow(
      /#1 \(kid "same"\): duplicate kid/,
    );
  });

  it('when "d" belongs to another key than "x", then loading refuses the pair without printing either', async () => {
    const { logger } = captureLogs();
    const one = await privateJwk('EdDSA', 'one');
    const other = await privateJwk('EdDSA', 'other');
    const error = await failure(
      loadSigningKeys({ jwks: jwks({ ...one, d: other.d }), production: true, logger }),
    );
    expect(error.message).toMatch(/#0 \(kid "one"\): the key material is invalid .*must form one key pair/);
    expect(error.message).not.toContain(other.d);
  });

  it('when key material is malformed, then loading says so without echoing it', async () => {
    const { logger } = captureLogs();
    const error = await failure(
      loadSigningKeys({
        jwks: jwks({ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', d: fakeD, kid: 'broken' }),
        production: true,
        logger,
      }),
    );
    expect(error.message).toMatch(/^signing key #0 \(kid "broken"\): the key material is invalid/);
  });

  it('when the set is empty, then loading refuses it', async () => {
    const { logger } = captureLogs();
    await expect(loadSigningKeys({ jwks: { keys: [] }, production: false, logger })).rejects.toThrow(
      /no keys/,
    );
  });
});
