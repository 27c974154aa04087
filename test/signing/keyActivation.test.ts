import { type JWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createClientTokens } from '../../src/signing/clientTokens.js';
import { loadSigningKeys } from '../../src/signing/keys.js';
import { captureLogs } from '../support/logs.js';
import { clientTokenConfig as config, privateJwk } from '../support/signingKeys.js';

const jwks = (...keys: JWK[]) => ({ keys: keys as Record<string, unknown>[] });
const start = Date.UTC(2026, 11, 2, 12, 0, 0);
const inSeconds = (seconds: number) => Math.floor(start / 1000) + seconds;

describe('signing keys with an activation time (nbf)', () => {
  it('when the first key is not active yet, then the next one signs, every key verifies, and the first signs from its nbf on', async () => {
    const { logger } = captureLogs();
    const clock = createManualClock(start);
    const pending = { ...(await privateJwk('EdDSA', 'new')), nbf: inSeconds(420) };
    const keys = await loadSigningKeys({
      jwks: jwks(pending, await privateJwk('EdDSA', 'old')),
      production: true,
      logger,
      clock,
    });
    const tokens = createClientTokens({ keys, config, clock });
    const mint = async () =>
      (await tokens.mint({ sub: 'https://app.example.com', origin: 'https://app.example.com' })).token;
    expect(keys.signer.kid).toBe('old');
    expect(keys.publicJwks.keys.map((key) => key.kid)).toEqual(['new', 'old']);
    expect(keys.verificationKey('new')).toBeDefined();
    const before = await mint();
    clock.advance(419_000);
    expect(keys.signer.kid).toBe('old');
    clock.advance(1_000);
    expect(keys.signer.kid).toBe('new');
    const after = await mint();
    for (const token of [before, after]) await expect(tokens.verify(token)).resolves.toMatchObject({});
    const { protectedHeader } = await jwtVerify(
      after,
      (keys.verificationKey('new') as { key: CryptoKey }).key,
      {
        currentDate: new Date(clock.now()),
      },
    );
    expect(protectedHeader.kid).toBe('new');
    expect(keys.activations).toEqual([
      { kid: 'new', activatesAt: inSeconds(420) * 1000 },
      { kid: 'old', activatesAt: 0 },
    ]);
  });

  it('when no key is active yet, or nbf is not a whole number of seconds, then the set is refused', async () => {
    const { logger } = captureLogs();
    const clock = createManualClock(start);
    const pending = { ...(await privateJwk('EdDSA', 'later')), nbf: inSeconds(60) };
    await expect(loadSigningKeys({ jwks: jwks(pending), production: true, logger, clock })).rejects.toThrow(
      'SIGNING_KEYS has no active key yet (every "nbf" is in the future)',
    );
    const malformed = { ...(await privateJwk('EdDSA', 'odd')), nbf: '2026-12-02' };
    await expect(loadSigningKeys({ jwks: jwks(malformed), production: true, logger, clock })).rejects.toThrow(
      'signing key #0 (kid "odd"): "nbf" must be the activation time in whole seconds since the epoch',
    );
  });
});
