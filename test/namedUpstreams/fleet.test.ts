import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../support/sharedRedis.js';
import { signingKeySet } from '../support/signingKeys.js';
import { namedUpstreamsEnv, proxied, tokenFor } from './support.js';

const noRedis = await missing('redis');

const origin = 'https://app.example.com';
const prefix = sharedRedisScratch('upstreams').prefix();

let auth: TestAuthServer;
let uitpasApi: ApiServer;
let entryApi: ApiServer;
const brokers: OidcBroker[] = [];

beforeAll(async () => {
  [auth, uitpasApi, entryApi] = await Promise.all([startTestAuthServer(), startEchoApi(), startEchoApi()]);
});

afterAll(async () => {
  await Promise.all(brokers.map((broker) => broker.close()));
  await Promise.all([auth.close(), uitpasApi.close(), entryApi.close()]);
});

describe.skipIf(noRedis)('named upstreams across a fleet sharing Redis', () => {
  it('when two brokers serve two names that share a token, then 200 cold callers over both make 1 upstream request', async () => {
    const env = {
      ...namedUpstreamsEnv(auth, {
        uitpas: { API_URL: uitpasApi.origin },
        entry: { API_URL: entryApi.origin },
      }),
      REDIS_URL: sharedRedisUrl,
      REDIS_KEY_PREFIX: prefix,
      CACHE_ENCRYPTION_KEY: registerSecret('cache key', randomBytes(32).toString('base64')),
      SIGNING_KEYS: await signingKeySet(),
      ALLOWED_ORIGINS: origin,
    };
    const [first, second] = await Promise.all([
      startBroker({ env: env, upstream: auth }),
      startBroker({ env: env, upstream: auth }),
    ]);
    if (!first || !second) throw new Error('brokers did not start');
    brokers.push(first, second);
    // One key signs for the fleet: a token from one broker opens both names on the other.
    const token = await tokenFor(first.url, origin);
    const before = auth.tokenRequests();
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const target = i % 2 === 0 ? first : second;
        const name = i % 4 < 2 ? 'uitpas' : 'entry';
        return proxied(target.url, `/api/proxy/${name}/r/${i}`, token, origin);
      }),
    );
    expect(answers.map((answer) => answer.status).filter((status) => status !== 200)).toEqual([]);
    expect(auth.tokenRequests() - before).toBe(1);
    const tokens = new Set(
      [...uitpasApi.requests, ...entryApi.requests].map((request) => request.headers.authorization),
    );
    expect(tokens.size).toBe(1);
    expect(uitpasApi.requests).toHaveLength(100);
    expect(entryApi.requests).toHaveLength(100);
  });
});
