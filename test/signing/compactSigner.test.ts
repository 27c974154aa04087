import { compactVerify, decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { createCompactSigner } from '../../src/signing/compactSigner.js';
import { loadSigningKeys } from '../../src/signing/keys.js';
import { captureLogs } from '../support/logs.js';
import { privateJwk } from '../support/signingKeys.js';

describe('compact signer', () => {
  for (const alg of ['EdDSA', 'ES256', 'HS256'] as const) {
    it(`when a payload is signed with an ${alg} key, then jose verifies it with that key and reads the header and payload back`, async () => {
      const { logger } = captureLogs();
      const keys = await loadSigningKeys({
        jwks: { keys: [await privateJwk(alg, alg)] },
        production: true,
        logger,
      });
      const sign = createCompactSigner(keys.signer, { kid: keys.signer.kid, typ: 'client-token+jwt' });
      const payload = { sub: 'https://app.example.com', exp: 1_900_000_000, note: 'é€' };

      const token = await sign(payload);

      const verifying = keys.verificationKey(keys.signer.kid);
      if (!verifying) throw new Error('no verification key');
      const verified = await compactVerify(token, verifying.key, { algorithms: [alg] });
      expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual(payload);
      expect(decodeProtectedHeader(token)).toEqual({ alg, kid: keys.signer.kid, typ: 'client-token+jwt' });
    });
  }

  it('when two payloads are signed, then each token carries its own signature over its own payload', async () => {
    const { logger } = captureLogs();
    const keys = await loadSigningKeys({
      jwks: { keys: [await privateJwk('EdDSA')] },
      production: true,
      logger,
    });
    const sign = createCompactSigner(keys.signer, { kid: keys.signer.kid, typ: 'client-token+jwt' });

    const [first, second] = await Promise.all([sign({ n: 1 }), sign({ n: 2 })]);

    expect(first.split('.')[0]).toBe(second.split('.')[0]);
    expect(first.split('.')[1]).not.toBe(second.split('.')[1]);
    expect(first.split('.')[2]).not.toBe(second.split('.')[2]);
  });
});
