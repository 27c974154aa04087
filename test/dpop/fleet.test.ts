import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiBroker, appOrigin, startBroker } from '../support/broker.js';
import { ath, dpopEnv, dpopToken, makeProof, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { missing } from '../support/requires.js';

const noRedis = await missing('redis');

let auth: TestAuthServer;
let replicas: ApiBroker[];

beforeAll(async () => {
  auth = await startTestAuthServer();
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('fleet signing key', jwk.d ?? '');
  const env = {
    SIGNING_KEYS: JSON.stringify({ keys: [{ ...jwk, kid: 'fleet-1' }] }),
    REDIS_URL: 'redis://127.0.0.1:6379',
    REDIS_KEY_PREFIX: `tb-dpop-${randomBytes(6).toString('hex')}:`,
    CACHE_ENCRYPTION_KEY: registerSecret('dpop fleet cache key', randomBytes(32).toString('base64')),
  };
  const options = { api: 'verifying', env: { ...dpopEnv, ...env }, upstream: auth } as const;
  replicas = [await startBroker(options), await startBroker(options)];
});

afterAll(async () => {
  await Promise.all((replicas ?? []).map((replica) => replica.close()));
  await auth?.close();
});

/** A call to `replica` addressed, as behind a load balancer, to the public host every replica shares. */
function callVia(replica: ApiBroker, publicHost: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const outgoing = request(`${replica.url}/api/proxy/hello`, {
      headers: { host: publicHost, origin: appOrigin, ...headers },
    });
    outgoing.on('response', (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

describe.skipIf(noRedis)('DPoP replay cache shared through Redis', () => {
  it('when a proof accepted by one replica is replayed to another, then the other refuses it', async () => {
    const [one, two] = replicas as [ApiBroker, ApiBroker];
    const key = await proofKey();
    const token = await dpopToken(one, key);
    const publicHost = new URL(one.url).host;
    const proof = await makeProof(key, { htm: 'GET', htu: `${one.url}/api/proxy/hello`, ath: ath(token) });
    const headers = { authorization: `DPoP ${token}`, dpop: proof };
    expect(await callVia(one, publicHost, headers)).toBe(200);
    expect(await callVia(two, publicHost, headers)).toBe(401);

    // The other replica does accept a fresh proof for the same token and URL.
    const fresh = await makeProof(key, { htm: 'GET', htu: `${one.url}/api/proxy/hello`, ath: ath(token) });
    expect(await callVia(two, publicHost, { ...headers, dpop: fresh })).toBe(200);
  });
});
