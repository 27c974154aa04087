import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiBroker, appOrigin, startBroker } from '../support/broker.js';
import { ath, dpopEnv, dpopToken, makeProof, type ProofKey, proofKey } from '../support/dpopProofs.js';

/**
 * Issue #12 defect 1: one DPoP token holder could fill the proof replay cache (with proofs sent from a
 * wrong Origin, never reaching the API) until every other caller's new proof was refused as "used before".
 * The caps are shrunk so that the property shows with a few hundred proofs: a cache of 100 proofs, 20 per
 * key. The real defaults (200,000 and 5,000) behave the same at scale.
 */

const cacheSize = 100;
const perKey = 20;

interface Caller {
  key: ProofKey;
  token: string;
}

let broker: ApiBroker;
const url = () => `${broker.url}/api/proxy/hello`;

async function caller(): Promise<Caller> {
  const key = await proofKey();
  return { key, token: await dpopToken(broker, key) };
}

/** One proxied call with a fresh proof (a new jti) by the caller's key. */
async function call({ key, token }: Caller, origin = appOrigin) {
  const proof = await makeProof(key, { htm: 'GET', htu: url(), ath: ath(token) });
  const response = await fetch(url(), { headers: { origin, authorization: `DPoP ${token}`, dpop: proof } });
  const body = (await response.json()) as { code?: string; detail?: string };
  return { status: response.status, code: body.code, detail: body.detail };
}

beforeAll(async () => {
  broker = await startBroker({
    api: 'verifying',
    env: {
      ...dpopEnv,
      DPOP_REPLAY_CACHE_SIZE: String(cacheSize),
      DPOP_PROOFS_PER_KEY: String(perKey),
      RATE_LIMIT_PROXY: 'off',
    },
  });
});
afterAll(async () => {
  await broker?.close();
});

describe('a DPoP token holder flooding the proxy with fresh proofs', () => {
  it('when the proofs come from a wrong Origin, then none is remembered, and an honest caller is served', async () => {
    const attacker = await caller();
    const honest = await caller();
    for (let i = 0; i < cacheSize * 3; i += 1) {
      expect(await call(attacker, 'https://evil.example.net')).toMatchObject({
        status: 403,
        code: 'origin_mismatch',
      });
    }
    expect(await call(honest)).toMatchObject({ status: 200 });
    // The attacker's own key has used none of its share either.
    expect(await call(attacker)).toMatchObject({ status: 200 });
  });

  it('when one key sends more proofs than its share, then that key alone gets 429 rate_limited (never "used before") and others are served', async () => {
    const attacker = await caller();
    const honest = await caller();
    const answers = [];
    for (let i = 0; i < perKey * 3; i += 1) answers.push(await call(attacker));
    // The proof that obtained the token is one of the key's share.
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(perKey - 1);
    for (const refused of answers.filter((answer) => answer.status !== 200)) {
      expect(refused).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(refused.detail).not.toMatch(/used before/);
    }
    expect(await call(honest)).toMatchObject({ status: 200 });
  });

  it('when many keys together fill the cache, then an honest caller with a new proof is still served', async () => {
    const attackers = await Promise.all(Array.from({ length: 6 }, () => caller()));
    const honest = await caller();
    for (const attacker of attackers) {
      for (let i = 1; i < perKey; i += 1) expect((await call(attacker)).status).toBe(200);
    }
    // 127 proofs were remembered in a cache of 100: the oldest were forgotten, none refused.
    for (let i = 0; i < 5; i += 1) expect(await call(honest)).toMatchObject({ status: 200 });
  });
});

describe('the proxy rate limit', () => {
  let limited: ApiBroker;
  afterAll(async () => {
    await limited?.close();
  });

  it('when one address sends more than RATE_LIMIT_PROXY, then it gets 429 rate_limited with Retry-After, before its token is even checked', async () => {
    limited = await startBroker({
      api: 'verifying',
      env: { ...dpopEnv, CLIENT_TOKEN_BINDING: 'none', RATE_LIMIT_PROXY: '5/minute' },
    });
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 7; i += 1) {
      last = await fetch(`${limited.url}/api/proxy/hello`, {
        headers: { origin: appOrigin, authorization: 'Bearer not-a-token' },
      });
      statuses.push(last.status);
      if (i < 6) await last.body?.cancel();
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
    expect(last?.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await last?.json()).toMatchObject({ code: 'rate_limited' });
  });
});
