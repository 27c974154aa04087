import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { powEnv, powProof } from '../support/powProofs.js';

let replicas: FakeUpstreamBroker[];

beforeAll(async () => {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('attestation fleet signing key', jwk.d ?? '');
  const env = {
    ...powEnv,
    SIGNING_KEYS: JSON.stringify({ keys: [{ ...jwk, kid: 'fleet-1' }] }),
    REDIS_URL: 'redis://127.0.0.1:6379',
    REDIS_KEY_PREFIX: `tb-attest-${randomBytes(6).toString('hex')}:`,
    CACHE_ENCRYPTION_KEY: registerSecret('attestation fleet cache key', randomBytes(32).toString('base64')),
  };
  replicas = [await startBroker({ upstream: 'fake', env }), await startBroker({ upstream: 'fake', env })];
});

afterAll(async () => {
  await Promise.all((replicas ?? []).map((replica) => replica.close()));
});

describe('pow proofs spent through Redis', () => {
  it('when a solution accepted by one replica is replayed to another, then the other refuses it', async () => {
    const [one, two] = replicas as [FakeUpstreamBroker, FakeUpstreamBroker];
    // Issued by one replica, solved, and usable on the other: the fleet shares the challenge key.
    const proof = await powProof(one);
    const mint = (replica: FakeUpstreamBroker) =>
      replica.request({
        method: 'POST',
        path: '/api/client-token',
        headers: { origin: appOrigin, attestation: proof },
      });
    const first = await mint(two);
    expect(first.status).toBe(200);
    const replayed = await mint(one);
    expect(replayed.status).toBe(401);
    expect(JSON.parse(replayed.body)).toMatchObject({ code: 'attestation_failed' });
  });
});
