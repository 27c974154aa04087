import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { base64url, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { BrokerError } from '../../src/errors.js';
import { type ClientTokens, createClientTokens } from '../../src/signing/clientTokens.js';
import { loadSigningKeys, type SigningKeys } from '../../src/signing/keys.js';
import { createRevocationList } from '../../src/signing/revocations.js';
import { ed25519, encode, forge, hmac, type RawSigner } from '../support/jwtForgery.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { clientTokenConfig as config } from '../support/signingKeys.js';

const clock = createManualClock();
const now = Math.floor(clock.now() / 1000);
const kid = 'broker-1';
const goodHeader = { alg: 'EdDSA', kid, typ: 'client-token+jwt' };
const goodClaims = {
  iss: config.issuer,
  aud: config.audience,
  sub: 'https://app.example.com',
  origin: 'https://app.example.com',
  iat: now,
  exp: now + 900,
  jti: 'AAAAAAAAAAAAAAAAAAAAAA',
};

let keys: SigningKeys;
let tokens: ClientTokens;
/** The broker's own private key: forged-by-insider tokens carry a valid signature. */
let ours: RawSigner;
let ourPublicJwk: JWK;
let attacker: { sign: RawSigner; publicJwk: JWK };

beforeAll(async () => {
  const { logger } = captureLogs();
  const ourPair = await generateKeyPair('EdDSA', { extractable: true });
  const ourJwk = { ...(await exportJWK(ourPair.privateKey)), kid };
  registerSecret('broker signing key', ourJwk.d ?? '');
  keys = await loadSigningKeys({ jwks: { keys: [ourJwk] }, production: true, logger });
  tokens = createClientTokens({ keys, config, clock });
  ours = ed25519((await importJWK(ourJwk, 'EdDSA')) as CryptoKey);
  ourPublicJwk = keys.publicJwks.keys[0] as JWK;
  const attackerPair = await generateKeyPair('EdDSA', { extractable: true });
  attacker = { sign: ed25519(attackerPair.privateKey), publicJwk: await exportJWK(attackerPair.publicKey) };
});

afterEach(() => {
  vi.restoreAllMocks();
});

async function expectRefused(token: string): Promise<BrokerError> {
  const error = await tokens.verify(token).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BrokerError);
  const refused = error as BrokerError;
  expect(refused.code).toBe('invalid_client_token');
  expect(refused.status).toBe(401);
  expect(refused.headers).toEqual({ 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  // Nothing of the token travels with the error: not its payload, not its signature.
  const carried = [refused.message, refused.detail, (refused.cause as Error | undefined)?.message].join(' ');
  for (const segment of token.split('.')) if (segment.length >= 8) expect(carried).not.toContain(segment);
  return refused;
}

describe('the forging helper', () => {
  it('when a token is forged with our key and good claims, then it verifies (so every refusal below is real)', async () => {
    const token = await forge(goodHeader, goodClaims, ours);
    await expect(tokens.verify(token)).resolves.toMatchObject({ sub: goodClaims.sub, jti: goodClaims.jti });
  });
});

describe('algorithm attacks', () => {
  it.each(['none', 'None', 'NONE', 'nOnE'])(
    'when alg is "%s" with an empty signature, then it is refused',
    async (alg) => {
      await expectRefused(
        `${encode(JSON.stringify({ ...goodHeader, alg }))}.${encode(JSON.stringify(goodClaims))}.`,
      );
    },
  );

  it.each(['none', 'None', 'NONE'])(
    'when alg is "%s" with some signature bytes, then it is refused',
    async (alg) => {
      await expectRefused(
        await forge({ ...goodHeader, alg }, goodClaims, async () => new Uint8Array([1, 2, 3]).buffer),
      );
    },
  );

  it('when HS256 is signed with the raw public key bytes as secret, then it is refused', async () => {
    const secret = base64url.decode(ourPublicJwk.x ?? '');
    await expectRefused(await forge({ ...goodHeader, alg: 'HS256' }, goodClaims, hmac(secret)));
  });

  it('when HS256 is signed with the published JWK JSON as secret, then it is refused', async () => {
    for (const text of [JSON.stringify(ourPublicJwk), JSON.stringify({ keys: [ourPublicJwk] })]) {
      await expectRefused(
        await forge({ ...goodHeader, alg: 'HS256' }, goodClaims, hmac(new TextEncoder().encode(text))),
      );
    }
  });

  it('when alg names another asymmetric algorithm, then it is refused', async () => {
    for (const alg of ['ES256', 'RS256', 'PS256', 'Ed25519', 'EdDSA ']) {
      await expectRefused(await forge({ ...goodHeader, alg }, goodClaims, ours));
    }
  });
});

describe('key selection attacks', () => {
  it.each([
    ['unknown', 'nope'],
    ['path-like', '../../etc/passwd'],
    ['prototype-named', '__proto__'],
    ['empty', ''],
  ])('when the kid is %s, then it is refused', async (_, badKid) => {
    await expectRefused(await forge({ ...goodHeader, kid: badKid }, goodClaims, ours));
  });

  it('when the kid is missing or not a string, then it is refused', async () => {
    const { kid: _kid, ...withoutKid } = goodHeader;
    await expectRefused(await forge(withoutKid, goodClaims, ours));
    await expectRefused(await forge({ ...goodHeader, kid: 1 }, goodClaims, ours));
    await expectRefused(await forge({ ...goodHeader, kid: [kid] }, goodClaims, ours));
  });

  it('when another key signs under our kid, then it is refused', async () => {
    await expectRefused(await forge(goodHeader, goodClaims, attacker.sign));
  });

  describe('embedded and remote key headers', () => {
    let server: Server;
    let url: string;
    let requests = 0;

    beforeAll(async () => {
      server = createServer((_req, res) => {
        requests += 1;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [{ ...attacker.publicJwk, kid, alg: 'EdDSA', use: 'sig' }] }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
    });

    afterAll(async () => {
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
    });

    it('when jku/x5u/jwk/x5c point at an attacker key, then the token is refused and nothing is fetched', async () => {
      const embedded = { ...attacker.publicJwk, kid, alg: 'EdDSA' };
      const headers = [
        { ...goodHeader, jku: url },
        { ...goodHeader, x5u: url },
        { ...goodHeader, jwk: embedded },
        { ...goodHeader, x5c: ['MIIBszCCAVmgAwIBAgIUAttackerCertificate'] },
        { ...goodHeader, jku: url, x5u: url, jwk: embedded, kid: 'attacker' },
      ];
      for (const header of headers) await expectRefused(await forge(header, goodClaims, attacker.sign));
      // Also answer a real fetch to prove the server works, so "0 requests" means "never asked".
      expect(requests).toBe(0);
      const probe = await fetch(url);
      expect(probe.status).toBe(200);
      expect(requests).toBe(1);
    });

    it('when our own key signs a token carrying jku, then the header is ignored and nothing is fetched', async () => {
      const before = requests;
      const token = await forge({ ...goodHeader, jku: url, x5u: url }, goodClaims, ours);
      await expect(tokens.verify(token)).resolves.toMatchObject({ sub: goodClaims.sub });
      expect(requests).toBe(before);
    });
  });
});

describe('signature and payload tampering', () => {
  it('when the signature is empty or truncated, then it is refused', async () => {
    const token = await forge(goodHeader, goodClaims, ours);
    const [head, body, signature = ''] = token.split('.');
    await expectRefused(`${head}.${body}.`);
    await expectRefused(`${head}.${body}.${signature.slice(0, -4)}`);
    await expectRefused(`${head}.${body}.${signature.slice(0, 10)}`);
    await expectRefused(`${head}.${body}`);
  });

  it('when the payload is changed after signing, then it is refused', async () => {
    const token = await forge(goodHeader, goodClaims, ours);
    const [head, , signature] = token.split('.');
    const tampered = encode(JSON.stringify({ ...goodClaims, origin: 'https://evil.example' }));
    await expectRefused(`${head}.${tampered}.${signature}`);
  });

  it('when the header is changed after signing, then it is refused', async () => {
    const token = await forge(goodHeader, goodClaims, ours);
    const [, body, signature] = token.split('.');
    await expectRefused(`${encode(JSON.stringify({ ...goodHeader, extra: 1 }))}.${body}.${signature}`);
  });
});

describe('header anomalies', () => {
  it('when a crit header is present, then it is refused even with our signature', async () => {
    await expectRefused(await forge({ ...goodHeader, crit: ['exp'], exp: now + 900 }, goodClaims, ours));
    await expectRefused(await forge({ ...goodHeader, crit: ['b64'], b64: false }, goodClaims, ours));
    await expectRefused(await forge({ ...goodHeader, crit: [] }, goodClaims, ours));
  });

  it.each([
    ['at+jwt', 'at+jwt'],
    ['JWT', 'JWT'],
    ['application/client-token+jwt', 'application/client-token+jwt'],
    ['upper case', 'CLIENT-TOKEN+JWT'],
    ['a number', 1],
  ])('when typ is %s, then it is refused', async (_, typ) => {
    await expectRefused(await forge({ ...goodHeader, typ }, goodClaims, ours));
  });

  it('when typ is missing, then it is refused', async () => {
    const { typ: _typ, ...withoutTyp } = goodHeader;
    await expectRefused(await forge(withoutTyp, goodClaims, ours));
  });

  it('when a nested JWT is presented (cty JWT, payload a JWT), then it is refused', async () => {
    const inner = await forge(goodHeader, goodClaims, ours);
    await expectRefused(await forge({ ...goodHeader, cty: 'JWT' }, JSON.stringify(inner), ours));
    await expectRefused(await forge({ ...goodHeader, cty: 'JWT' }, goodClaims, ours));
    await expectRefused(await forge(goodHeader, JSON.stringify(inner), ours));
  });
});

describe('claim anomalies signed with our own key', () => {
  const without = (name: keyof typeof goodClaims) => {
    const { [name]: _removed, ...rest } = goodClaims;
    return rest;
  };

  it.each(['exp', 'iat', 'jti', 'sub', 'origin', 'iss', 'aud'] as const)(
    'when %s is missing, then it is refused',
    async (name) => {
      await expectRefused(await forge(goodHeader, without(name), ours));
    },
  );

  it.each([
    ['exp is a string', { exp: String(now + 900) }],
    ['iat is a string', { iat: String(now) }],
    ['nbf is a string', { nbf: String(now) }],
    ['jti is a number', { jti: 12 }],
    ['jti is not the minted shape', { jti: 'x' }],
    ['sub is empty', { sub: '' }],
    ['origin is an object', { origin: { href: 'https://app.example.com' } }],
    ['ip is not canonical', { ip: '::FFFF:1.2.3.4' }],
    ['ip_prefix comes without ip', { ip_prefix: 24 }],
    ['ip_prefix is too long for IPv4', { ip: '1.2.3.4', ip_prefix: 40 }],
    ['iat is far in the future', { iat: now + 3600, exp: now + 4500 }],
    ['iat is just beyond the tolerance', { iat: now + 6, exp: now + 906 }],
    ['nbf is in the future', { nbf: now + 60 }],
    ['exp is past beyond the tolerance', { iat: now - 906, exp: now - 6 }],
    ['exp - iat exceeds the ttl', { exp: now + 86_400 }],
    ['exp is before iat', { exp: now - 1 }],
    ['iss is another issuer', { iss: 'https://issuer.example' }],
    ['aud is another audience', { aud: 'https://api.example' }],
    ['aud is an array holding ours', { aud: [config.audience, 'https://api.example'] }],
  ])('when %s, then it is refused', async (_, change) => {
    await expectRefused(await forge(goodHeader, { ...goodClaims, ...change }, ours));
  });

  it('when exp or iat is a non-finite number written raw into the JSON (1e309), then it is refused', async () => {
    const json = JSON.stringify(goodClaims);
    await expectRefused(await forge(goodHeader, json.replace(`"exp":${now + 900}`, '"exp":1e309'), ours));
    await expectRefused(await forge(goodHeader, json.replace(`"iat":${now}`, '"iat":-1e309'), ours));
    expect(json).toContain(`"exp":${now + 900}`);
  });

  it('when the payload is not a JSON object, then it is refused', async () => {
    for (const payload of ['[]', '"text"', '42', 'null', '{"iss":']) {
      await expectRefused(await forge(goodHeader, payload, ours));
    }
  });
});

describe('malformed input', () => {
  it('when the token is oversized, then it is refused before any signature is checked', async () => {
    const verify = vi.spyOn(crypto.subtle, 'verify');
    const token = await forge(goodHeader, { ...goodClaims, pad: 'x'.repeat(4096) }, ours);
    await expectRefused(token);
    await expectRefused('a'.repeat(1_000_000));
    expect(verify).not.toHaveBeenCalled();
    // The control uses a verifier that has not seen (and remembered) this token in an earlier test.
    await createClientTokens({ keys, config, clock }).verify(await forge(goodHeader, goodClaims, ours));
    expect(verify).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['empty', ''],
    ['one segment', 'abc'],
    ['two segments', 'abc.def'],
    ['four segments', 'a.b.c.d'],
    ['standard base64 characters', 'ab+c.de/f.gh=='],
    ['non-ASCII', 'äbc.déf.ghi'],
    ['whitespace', 'abc. def.ghi'],
    ['a header that is not JSON', `${encode('hello')}.${encode('{}')}.c2ln`],
    ['a header that is a JSON array', `${encode('[]')}.${encode('{}')}.c2ln`],
    ['a Bearer prefix', 'Bearer abc.def.ghi'],
  ])('when the token is %s, then it is refused', async (_, token) => {
    await expectRefused(token);
  });

  it('when arbitrary strings are presented, then each is refused with invalid_client_token', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), async (token) => {
        const error = await tokens.verify(token).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        return error instanceof BrokerError && error.code === 'invalid_client_token';
      }),
      { numRuns: 300 },
    );
  });
});

describe('tokens that are not client tokens', () => {
  const accessTokenClaims = {
    iss: 'https://auth.example.com',
    aud: 'https://api.example.com',
    sub: 'client-1',
    client_id: 'client-1',
    scope: 'read',
    iat: now,
    exp: now + 300,
    jti: 'BBBBBBBBBBBBBBBBBBBBBB',
  };

  it('when an upstream-style access token is presented, even one signed by our key, then it is refused', async () => {
    await expectRefused(await forge({ alg: 'EdDSA', kid, typ: 'at+jwt' }, accessTokenClaims, ours));
    await expectRefused(await forge({ alg: 'EdDSA', kid, typ: 'JWT' }, accessTokenClaims, ours));
    await expectRefused(
      await forge({ alg: 'RS256', kid: 'upstream-key', typ: 'at+jwt' }, accessTokenClaims, ours),
    );
  });

  it('when our typ is used with access-token claims, then the missing origin refuses it', async () => {
    await expectRefused(
      await forge(goodHeader, { ...accessTokenClaims, iss: config.issuer, aud: config.audience }, ours),
    );
  });
});

describe('revocation', () => {
  it('when the jti of a genuine token is revoked, then it answers token_revoked', async () => {
    const revocations = createRevocationList({ clock, clockToleranceSeconds: 5 });
    const guarded = createClientTokens({ keys, config, clock, revocations });
    const { token, jti, exp } = await guarded.mint({ sub: 's', origin: 'https://app.example.com' });
    await revocations.revoke(jti, exp);
    const error = await guarded.verify(token).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as BrokerError).code).toBe('token_revoked');
    expect((error as BrokerError).status).toBe(401);
    revocations.close();
  });
});
