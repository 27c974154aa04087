import { randomBytes } from 'node:crypto';
import { createChallenge, solveChallenge, verifySolution } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/pbkdf2';
import { describe, expect, it } from 'vitest';
import { createPowProvider } from '../../src/attestation/pow.js';
import { AttestationRefusal } from '../../src/attestation/provider.js';
import { systemClock } from '../../src/clock.js';
import { registerSecret } from '../support/logs.js';

const origin = 'https://app.example.com';
const secret = randomBytes(32);
const hmacSignatureSecret = registerSecret('pow challenge key', secret.toString('base64url'));
const pow = createPowProvider({
  settings: { difficulty: 1, cost: 10, ttlSeconds: 60 },
  secret,
  clock: systemClock,
});

describe("the pow challenge is ALTCHA's v2 format", () => {
  it("when altcha-lib's verifySolution checks a solved broker challenge, then it verifies", async () => {
    const challenge = await pow.challenge(origin);
    const solution = await solveChallenge({ challenge, deriveKey });
    if (!solution) throw new Error('not solved');
    const verdict = await verifySolution({ challenge, solution, deriveKey, hmacSignatureSecret });
    expect(verdict.verified).toBe(true);
  });

  it('when the broker checks a challenge altcha-lib signed with the same key, then it accepts the solution', async () => {
    const challenge = await createChallenge({
      algorithm: 'PBKDF2/SHA-256',
      cost: 10,
      keyPrefix: '0',
      deriveKey,
      hmacSignatureSecret,
      expiresAt: Math.floor(Date.now() / 1000) + 60,
      data: { origin },
    });
    const solution = await solveChallenge({ challenge, deriveKey });
    const proof = btoa(JSON.stringify({ challenge, solution }));
    const verdict = await pow.verify({ proof, origin, ip: '127.0.0.1' });
    expect(verdict).not.toBeInstanceOf(AttestationRefusal);
    expect(verdict).toMatchObject({ once: challenge.signature });
  });

  it('when the derived key is right but the counter is not, then the solution is refused', async () => {
    const challenge = await pow.challenge(origin);
    const solution = await solveChallenge({ challenge, deriveKey });
    if (!solution) throw new Error('not solved');
    const proof = btoa(
      JSON.stringify({ challenge, solution: { ...solution, counter: solution.counter + 1 } }),
    );
    const verdict = await pow.verify({ proof, origin, ip: '127.0.0.1' });
    expect(verdict).toMatchObject({ code: 'attestation_failed', reason: 'invalid_solution' });
  });
});
