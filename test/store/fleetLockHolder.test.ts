import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { type BrokerProcess, startBrokerProcess } from '../support/brokerProcess.js';
import { registerSecret } from '../support/logs.js';
import { type FakeTokenServer, mintToken, reply, startFakeTokenServer } from '../support/oauthServers.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../support/sharedRedis.js';
import { sleep, waitFor } from '../support/waiting.js';

const noRedis = await missing('redis');

describe.skipIf(noRedis)('a renewal lock holder killed mid-request', () => {
  const { admin: redis, prefix: newPrefix } = sharedRedisScratch('lock');
  const prefix = newPrefix();
  let upstream: FakeTokenServer | undefined;
  const brokers: BrokerProcess[] = [];

  afterAll(async () => {
    await Promise.all(brokers.map((broker) => broker.stop()));
    await upstream?.close();
  });

  it('when the holder is SIGKILLed, then another replica takes over once the lease lapses and callers get a token', async () => {
    let requests = 0;
    const issued: string[] = [];
    // The first token request never gets an answer: its replica is killed while it waits.
    const server = await startFakeTokenServer((_req, res) => {
      requests += 1;
      if (requests === 1) return;
      const accessToken = mintToken('takeover-access');
      issued.push(accessToken);
      reply(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: 3600 });
    });
    upstream = server;
    const apiKey = registerSecret('takeover api key', `key-${randomBytes(24).toString('base64url')}`);
    const env = {
      REDIS_URL: sharedRedisUrl,
      REDIS_KEY_PREFIX: prefix,
      REDIS_LOCK_TTL_MS: '1000',
      CACHE_ENCRYPTION_KEY: registerSecret('takeover cache key', randomBytes(32).toString('hex')),
      BROKER_API_KEYS: apiKey,
      UPSTREAM_TOKEN_URL: server.tokenUrl,
      UPSTREAM_CLIENT_ID: 'takeover-client',
      UPSTREAM_CLIENT_SECRET: registerSecret(
        'takeover secret',
        `secret-${randomBytes(24).toString('base64url')}`,
      ),
      UPSTREAM_TIMEOUT_MS: '30000',
    };
    brokers.push(...(await Promise.all([startBrokerProcess(env), startBrokerProcess(env)])));
    const [holder, survivor] = brokers as [BrokerProcess, BrokerProcess];
    const get = (broker: BrokerProcess) =>
      request(`${broker.url}/api/upstream-token`, { headers: { authorization: `Bearer ${apiKey}` } });

    void get(holder).catch(() => undefined);
    await waitFor(() => requests > 0);
    // The holder keeps extending its 1 s lease while the request hangs (1.5 s here).
    await sleep(1_500);
    expect(await redis.keys(`${prefix}lock:*`)).toHaveLength(1);
    await holder.kill();

    const started = Date.now();
    const answer = await get(survivor);
    const body = (await answer.body.json()) as { access_token: string };
    expect(answer.statusCode).toBe(200);
    expect(body.access_token).toBe(issued[0]);
    expect(requests).toBe(2);
    // Waited for the lapsed lease (at most the 1 s TTL), not for the 30 s upstream timeout.
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 60_000);
});
