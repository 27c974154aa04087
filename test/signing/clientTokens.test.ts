import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createClientTokens } from '../../src/signing/clientTokens.js';
import { loadSigningKeys, type SigningKeys } from '../../src/signing/keys.js';
import { createRevocationList } from '../../src/signing/revocations.js';
import { refusal } from '../support/expectErrors.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { clientTokenConfig as config, privateJwk } from '../support/signingKeys.js';

const origin = 'https://app.example.com';

let keys: SigningKeys;
beforeAll(async () => {
  const { logger } = captureLogs();
  keys = await loadSigningKeys({
    jwks: { keys: [await privateJwk('EdDSA', 'ed-1')] },
    production: true,
    logger,
  });
});

describe('client token minting', () => {
  it('when a bound token is minted, then header and claims carry everything a verifier needs', async () => {
    const clock = createManualClock(Date.UTC(2026, 0, 1, 12, 0, 0, 700));
    const minted = await createClientTokens({ keys, config, clock }).mint({
      sub: origin,
      origin,
      ip: '203.0.113.7',
    });
    registerSecret('client token', minted.token);
    const iat = Math.floor(clock.now() / 1000);
    expect(decodeProtectedHeader(minted.token)).toEqual({
      alg: 'EdDSA',
      kid: 'ed-1',
      typ: 'client-token+jwt',
    });
    const claims = decodeJwt(minted.token);
    expect(claims).toEqual({
      iss: config.issuer,
      aud: config.audience,
      sub: origin,
      origin,
      ip: '203.0.113.7',
      iat,
      exp: iat + 900,
      jti: minted.jti,
    });
    expect(minted).toMatchObject({ iat, exp: iat + 900, expiresIn: 900 });
    expect(minted.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('when tokens are minted twice in the same second, then their jti differ', async () => {
    const tokens = createClientTokens({ keys, config, clock: createManualClock() });
    const [one, two] = await Promise.all([
      tokens.mint({ sub: 's', origin }),
      tokens.mint({ sub: 's', origin }),
    ]);
    expect(one.jti).not.toBe(two.jti);
  });

  it('when a token is unbound, then it has no ip claim', async () => {
    const { token } = await createClientTokens({ keys, config, clock: createManualClock() }).mint({
      sub: 's',
      origin,
    });
    expect(decodeJwt(token)).not.toHaveProperty('ip');
    expect(decodeJwt(token)).not.toHaveProperty('ip_prefix');
  });

  it('when a token is bound to a network, then ip_prefix travels and verify returns it as ipPrefix', async () => {
    const tokens = createClientTokens({ keys, config, clock: createManualClock() });
    const { token } = await tokens.mint({ sub: 's', origin, ip: '2001:db8::1', ipPrefix: 64 });
    expect(decodeJwt(token)).toMatchObject({ ip: '2001:db8::1', ip_prefix: 64 });
    expect(await tokens.verify(token)).toMatchObject({ ip: '2001:db8::1', ipPrefix: 64 });
  });

  it('when mint is given a non-canonical ip or a prefix without ip, then it throws', async () => {
    const tokens = createClientTokens({ keys, config, clock: createManualClock() });
    await expect(tokens.mint({ sub: 's', origin, ip: '2001:DB8::1' })).rejects.toThrow(TypeError);
    await expect(tokens.mint({ sub: 's', origin, ipPrefix: 24 })).rejects.toThrow(TypeError);
  });
});

describe('client token verification', () => {
  it('when a token is verified with jose against the published JWKS, then it passes', async () => {
    const clock = createManualClock();
    const { token } = await createClientTokens({ keys, config, clock }).mint({
      sub: 's',
      origin,
      ip: '198.51.100.1',
    });
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(keys.publicJwks), {
      issuer: config.issuer,
      audience: config.audience,
      typ: 'client-token+jwt',
      currentDate: new Date(clock.now()),
    });
    expect(protectedHeader.kid).toBe('ed-1');
    expect(payload).toMatchObject({ origin, ip: '198.51.100.1' });
  });

  it('when an ES256 token is minted and verified, then the claims come back', async () => {
    const { logger } = captureLogs();
    const esKeys = await loadSigningKeys({
      jwks: { keys: [await privateJwk('ES256', 'ec')] },
      production: true,
      logger,
    });
    const tokens = createClientTokens({ keys: esKeys, config, clock: createManualClock() });
    const { token, jti } = await tokens.mint({ sub: 's', origin });
    expect(await tokens.verify(token)).toMatchObject({ sub: 's', origin, jti });
  });

  it('when the token is used within its lifetime plus tolerance, then it verifies; beyond, it is refused', async () => {
    const clock = createManualClock();
    const tokens = createClientTokens({ keys, config, clock });
    const { token } = await tokens.mint({ sub: 's', origin });
    clock.advance(899_000);
    await expect(tokens.verify(token)).resolves.toMatchObject({ sub: 's' });
    clock.advance(5_000);
    await expect(tokens.verify(token)).resolves.toMatchObject({ sub: 's' });
    clock.advance(1_000);
    const error = await refusal(tokens.verify(token));
    expect(error.code).toBe('invalid_client_token');
    expect(error.status).toBe(401);
    expect(error.detail).toBe('The client token has expired');
    expect(error.headers['WWW-Authenticate']).toBe('Bearer error="invalid_token"');
  });

  it('when the verifier clock is slightly behind the minter, then a token within tolerance verifies', async () => {
    const minter = createManualClock();
    const { token } = await createClientTokens({ keys, config, clock: minter }).mint({ sub: 's', origin });
    const behind = createManualClock(minter.now() - 4_000);
    await expect(createClientTokens({ keys, config, clock: behind }).verify(token)).resolves.toMatchObject({
      sub: 's',
    });
    const farBehind = createManualClock(minter.now() - 10_000);
    expect((await refusal(createClientTokens({ keys, config, clock: farBehind }).verify(token))).code).toBe(
      'invalid_client_token',
    );
  });

  it('when the jti has been revoked, then verification answers token_revoked', async () => {
    const clock = createManualClock();
    const revocations = createRevocationList({ clock, clockToleranceSeconds: 5 });
    const tokens = createClientTokens({ keys, config, clock, revocations });
    const { token, jti, exp } = await tokens.mint({ sub: 's', origin });
    await expect(tokens.verify(token)).resolves.toMatchObject({ jti });
    await revocations.revoke(jti, exp);
    const error = await refusal(tokens.verify(token));
    expect(error.code).toBe('token_revoked');
    expect(error.status).toBe(401);
    expect(error.headers['WWW-Authenticate']).toMatch(/^Bearer error="invalid_token"/);
    revocations.close();
  });
});
