import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { dpopEnv, makeProof, type ProofKey, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';

/**
 * Issue #24 defect 3: with a small DPOP_REPLAY_CACHE_SIZE, a proof pushed out of the cache by newer ones
 * was accepted again inside its `iat` window. The broker's clock is a manual one, so the proofs' `iat`
 * and the window are exact without sleeping.
 */
describe('DPoP replay after the cache is full', () => {
  it('when a proof is pushed out by newer ones, then replaying it inside its window is refused, and new proofs are served', async () => {
    const clock = createManualClock(Date.now());
    const broker = await startBroker({
      upstream: 'fake',
      clock,
      env: { ...dpopEnv, DPOP_REPLAY_CACHE_SIZE: '100' },
    });
    const htu = `${broker.url}/api/client-token`;
    const iat = () => Math.floor(clock.now() / 1000);
    const mint = async (proof: string) => {
      const answer = await broker.request({
        method: 'POST',
        path: '/api/client-token',
        headers: { origin: appOrigin, dpop: proof },
      });
      const body = JSON.parse(answer.body) as { token?: string; code?: string; detail?: string };
      if (body.token) registerSecret('dpop eviction client token', body.token);
      return { status: answer.status, code: body.code, detail: body.detail };
    };
    const fresh = (key: ProofKey) => makeProof(key, { htm: 'POST', htu, iat: iat() });

    const victim = await proofKey();
    const captured = await fresh(victim);
    expect((await mint(captured)).status).toBe(200);

    clock.advance(10_000);
    const flooder = await proofKey();
    for (let i = 0; i < 150; i += 1) expect((await mint(await fresh(flooder))).status).toBe(200);

    // 10 s into a 30 s window: without a record the captured proof would pass every other check.
    expect(await mint(captured)).toMatchObject({ status: 400, code: 'invalid_dpop_proof' });
    expect(await mint(await fresh(victim))).toMatchObject({ status: 200 });
    expect(await mint(await fresh(await proofKey()))).toMatchObject({ status: 200 });
    // Proofs dated a moment ago are honest too: those were never forgotten.
    const lagging = await makeProof(await proofKey(), { htm: 'POST', htu, iat: iat() - 4 });
    expect(await mint(lagging)).toMatchObject({ status: 200 });
  });
});
