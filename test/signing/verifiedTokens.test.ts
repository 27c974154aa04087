import { exportJWK, generateKeyPair } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createClientTokens } from '../../src/signing/clientTokens.js';
import { loadSigningKeys, type SigningKeys } from '../../src/signing/keys.js';
import { createRevocationList } from '../../src/signing/revocations.js';
import { createVerifiedTokens } from '../../src/signing/verifiedTokens.js';
import { refusal } from '../support/expectErrors.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { clientTokenConfig as config } from '../support/signingKeys.js';

const origin = 'https://app.example.com';

let keys: SigningKeys;
beforeAll(async () => {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('EdDSA private key', jwk.d ?? '');
  keys = await loadSigningKeys({
    jwks: { keys: [{ ...jwk, kid: 'ed-1' }] },
    production: true,
    logger: captureLogs().logger,
  });
});

describe('verified tokens store', () => {
  it('when an entry reaches its deadline on the injected clock, then it is gone', () => {
    const clock = createManualClock();
    const store = createVerifiedTokens<string>({ clock, maxEntries: 10 });
    store.set('t1', 'claims', clock.now() + 1_000);
    clock.advance(999);
    expect(store.get('t1')).toBe('claims');
    clock.advance(1);
    expect(store.get('t1')).toBeUndefined();
    expect(store.size()).toBe(0);
  });

  it('when more tokens are stored than it may hold, then the oldest go and the size stays at the bound', () => {
    const clock = createManualClock();
    const store = createVerifiedTokens<number>({ clock, maxEntries: 3 });
    for (let index = 0; index < 1_000; index += 1) store.set(`t${index}`, index, clock.now() + 60_000);
    expect(store.size()).toBe(3);
    expect(store.get('t0')).toBeUndefined();
    expect(store.get('t996')).toBeUndefined();
    expect([store.get('t997'), store.get('t998'), store.get('t999')]).toEqual([997, 998, 999]);
  });

  it('when a token is looked up, then only the exact string matches', () => {
    const clock = createManualClock();
    const store = createVerifiedTokens<number>({ clock, maxEntries: 3 });
    store.set('abc.def.ghi', 1, clock.now() + 60_000);
    expect(store.get('abc.def.ghi ')).toBeUndefined();
    expect(store.get('ABC.def.ghi')).toBeUndefined();
    expect(store.get('abc.def.gh')).toBeUndefined();
  });

  it('when an entry is already past its deadline or the bound is 0, then nothing is stored', () => {
    const clock = createManualClock();
    const store = createVerifiedTokens<number>({ clock, maxEntries: 3 });
    store.set('late', 1, clock.now());
    expect(store.size()).toBe(0);
    const off = createVerifiedTokens<number>({ clock, maxEntries: 0 });
    off.set('t', 1, clock.now() + 60_000);
    expect(off.get('t')).toBeUndefined();
  });
});

describe('client token verification with remembered tokens', () => {
  it('when the same token is verified twice, then the second call answers from memory', async () => {
    const clock = createManualClock();
    const tokens = createClientTokens({ keys, config, clock });
    const { token } = await tokens.mint({ sub: 's', origin });
    const first = await tokens.verify(token);
    expect(await tokens.verify(token)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    // Without the store every call verifies afresh.
    const uncached = createClientTokens({ keys, config, clock, verifiedTokensMax: 0 });
    expect(await uncached.verify(token)).not.toBe(await uncached.verify(token));
  });

  it('when a remembered token is revoked, then the next call is refused at once', async () => {
    const clock = createManualClock();
    const revocations = createRevocationList({ clock, clockToleranceSeconds: 5 });
    const tokens = createClientTokens({ keys, config, clock, revocations });
    const { token, jti, exp } = await tokens.mint({ sub: 's', origin });
    await tokens.verify(token);
    await tokens.verify(token);
    await revocations.revoke(jti, exp);
    expect((await refusal(tokens.verify(token))).code).toBe('token_revoked');
    expect((await refusal(tokens.verify(token))).code).toBe('token_revoked');
    revocations.close();
  });

  it('when a remembered token passes its exp plus tolerance, then it is refused as expired', async () => {
    const clock = createManualClock();
    const tokens = createClientTokens({ keys, config, clock });
    const { token } = await tokens.mint({ sub: 's', origin });
    await tokens.verify(token);
    clock.advance((900 + 5) * 1000 - 1);
    await expect(tokens.verify(token)).resolves.toMatchObject({ sub: 's' });
    clock.advance(1_000);
    const error = await refusal(tokens.verify(token));
    expect(error.code).toBe('invalid_client_token');
    expect(error.detail).toBe('The client token has expired');
  });

  it('when the clock goes back before a remembered token was issued, then it is refused as jose would', async () => {
    const clock = createManualClock();
    const tokens = createClientTokens({ keys, config, clock });
    const { token } = await tokens.mint({ sub: 's', origin });
    await tokens.verify(token);
    clock.advance(-10_000);
    expect((await refusal(tokens.verify(token))).code).toBe('invalid_client_token');
  });

  it('when a token with one altered character follows a remembered one, then it is verified and refused', async () => {
    const clock = createManualClock();
    const tokens = createClientTokens({ keys, config, clock });
    const { token } = await tokens.mint({ sub: 's', origin });
    await tokens.verify(token);
    const last = token.at(-2) === 'A' ? 'B' : 'A';
    const forged = `${token.slice(0, -2)}${last}${token.at(-1)}`;
    expect((await refusal(tokens.verify(forged))).code).toBe('invalid_client_token');
  });
});
