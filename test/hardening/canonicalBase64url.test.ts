import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCanonicalBase64url, isCanonicalCompactJws } from '../../src/signing/base64url.js';
import { type ApiBroker, appOrigin, startBroker } from '../support/broker.js';
import { dpopEnv, makeProof, proofKey } from '../support/dpopProofs.js';
import { signatureSpellings } from '../support/jwtForgery.js';

/** Issue #12 defect 4: a JWS segment whose last character carries non-zero unused bits is refused. */

describe('canonical base64url', () => {
  it.each([
    ['', true],
    ['AA', true],
    ['AB', false],
    ['AAA', true],
    ['AAE', true],
    ['AAB', false],
    ['AAAA', true],
    ['A', false],
    ['AA==', false],
    ['A+/A', false],
    ['AA A', false],
  ])('when a segment is %j, then canonical is %s', (segment, canonical) => {
    expect(isCanonicalBase64url(segment)).toBe(canonical);
  });

  it('when a token has an empty segment or not three, then it is not a canonical compact JWS', () => {
    expect(isCanonicalCompactJws('AA.AA.AA')).toBe(true);
    expect(isCanonicalCompactJws('AA.AA.')).toBe(false);
    expect(isCanonicalCompactJws('AA.AA')).toBe(false);
    expect(isCanonicalCompactJws('AA.AA.AA.AA')).toBe(false);
  });
});

describe('DPoP proofs through the broker', () => {
  let broker: ApiBroker;
  beforeAll(async () => {
    broker = await startBroker({ api: 'verifying', env: dpopEnv });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('when a proof is respelled in its spare signature bits, then /api/client-token answers 400 invalid_dpop_proof, and the canonical proof is accepted', async () => {
    const key = await proofKey();
    const htu = `${broker.url}/api/client-token`;
    const proof = await makeProof(key, { htm: 'POST', htu });
    const spellings = signatureSpellings(proof);
    expect(spellings).toHaveLength(15);
    for (const spelling of spellings) {
      const answer = await fetch(htu, { method: 'POST', headers: { origin: appOrigin, dpop: spelling } });
      expect(answer.status).toBe(400);
      expect(await answer.json()).toMatchObject({
        code: 'invalid_dpop_proof',
        detail: 'the DPoP header is not one compact JWS in canonical base64url',
      });
    }
    const answer = await fetch(htu, { method: 'POST', headers: { origin: appOrigin, dpop: proof } });
    expect(answer.status).toBe(200);
  });
});
