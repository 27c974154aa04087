import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { accessTokenHash, createDpopProofVerifier, type ProofExpectation } from '../../src/dpop/proof.js';
import { createMemoryReplayCache } from '../../src/dpop/replayCache.js';
import { ath, makeProof, proofKey } from '../support/dpopProofs.js';
import { refusal } from '../support/expectErrors.js';

const start = Date.UTC(2026, 0, 1, 12);
const url = 'https://broker.example.com/api/proxy/items';

function verifierAt(clock = createManualClock(start)) {
  const verifier = createDpopProofVerifier({
    clock,
    replayCache: createMemoryReplayCache({ clock }),
    windowSeconds: 60,
  });
  return { clock, verifier };
}

describe('DPoP proof verification', () => {
  it('when iat is exactly 60 s away, then the proof passes; at 61 s it is refused either way', async () => {
    const { verifier } = verifierAt();
    const key = await proofKey();
    const at = (offset: number) => makeProof(key, { htm: 'GET', htu: url, iat: start / 1000 + offset });
    const expect_ = (proof: string): ProofExpectation => ({ proof, method: 'GET', url, endpoint: 'token' });
    await expect(verifier.verify(expect_(await at(-60)))).resolves.toEqual({ jkt: key.jkt });
    await expect(verifier.verify(expect_(await at(60)))).resolves.toEqual({ jkt: key.jkt });
    expect((await refusal(verifier.verify(expect_(await at(-61))))).detail).toBe('the proof is too old');
    expect((await refusal(verifier.verify(expect_(await at(61))))).detail).toBe(
      'the proof is dated in the future',
    );
  });

  it('when a proof is replayed until its window closes, then every replay is refused', async () => {
    const { clock, verifier } = verifierAt();
    const key = await proofKey();
    const proof = await makeProof(key, { htm: 'GET', htu: url, iat: start / 1000 });
    const expectation: ProofExpectation = { proof, method: 'GET', url, endpoint: 'token' };
    await verifier.verify(expectation);
    for (const step of [0, 30_000, 29_000, 999]) {
      clock.advance(step);
      const error = await refusal(verifier.verify(expectation));
      expect(error.detail).toBe('the proof has been used before');
    }
    clock.advance(2_000);
    expect((await refusal(verifier.verify(expectation))).detail).toBe('the proof is too old');
  });

  it('when the endpoint is the token route, then a refusal is 400; at a resource it is 401', async () => {
    const { verifier } = verifierAt();
    const token = await refusal(
      verifier.verify({ proof: undefined, method: 'POST', url, endpoint: 'token' }),
    );
    const resource = await refusal(
      verifier.verify({
        proof: undefined,
        method: 'GET',
        url,
        endpoint: 'resource',
        accessToken: 't',
        jkt: 'x',
      }),
    );
    expect([token.status, resource.status]).toEqual([400, 401]);
    expect(token.code).toBe('invalid_dpop_proof');
    expect(resource.headers['WWW-Authenticate']).toBe('DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"');
  });

  it('when htu differs only in spelling (case, default port, escapes, query, fragment), then it still matches', async () => {
    const { verifier } = verifierAt();
    const key = await proofKey();
    const spellings = [
      'HTTPS://Broker.Example.COM:443/api/proxy/items',
      'https://broker.example.com/api/proxy/%69tems',
      'https://broker.example.com/api/proxy/items?page=2#top',
      'https://broker.example.com/api/proxy/./items',
    ];
    for (const htu of spellings) {
      const proof = await makeProof(key, { htm: 'GET', htu, iat: start / 1000 });
      await expect(
        verifier.verify({ proof, method: 'GET', url: `${url}?q=1`, endpoint: 'token' }),
      ).resolves.toEqual({
        jkt: key.jkt,
      });
    }
    for (const htu of [
      'http://broker.example.com/api/proxy/items',
      'https://broker.example.com:8443/api/proxy/items',
      'https://broker.example.com/api/proxy/items/',
      '/api/proxy/items',
    ]) {
      const proof = await makeProof(key, { htm: 'GET', htu, iat: start / 1000 });
      const error = await refusal(verifier.verify({ proof, method: 'GET', url, endpoint: 'token' }));
      expect(error.detail, htu).toBe('the proof was made for another URL');
    }
  });

  it('when ath is the base64url SHA-256 of the token, then it matches what RFC 9449 §4.2 computes', () => {
    // RFC 9449 §7.1 example: the access token and its `ath`.
    const token = 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU';
    expect(accessTokenHash(token)).toBe('fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
    expect(ath(token)).toBe(accessTokenHash(token));
  });
});
