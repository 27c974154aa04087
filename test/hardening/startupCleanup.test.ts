import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker } from '../../src/broker.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config/index.js';
import { captureLogs } from '../support/logs.js';
import { type RedisServer, startRedisServer } from '../support/redisServers.js';

/** Issue #24 loose end: createBroker left Redis (and what else it had opened) open when a later step threw. */
describe('a start-up step that throws after Redis is connected', () => {
  let redis: RedisServer;
  let admin: Redis;
  beforeAll(async () => {
    redis = await startRedisServer();
    admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  }, 30_000);
  afterAll(async () => {
    admin?.disconnect();
    await redis?.stop();
  });

  const brokerClients = async () =>
    String(await admin.call('CLIENT', 'LIST'))
      .split('\n')
      .filter((line) => / name=token-broker/.test(line));

  it('when building the upstreams throws, then createBroker rejects and no broker connection to Redis is left open', async () => {
    const config = loadConfig({
      UPSTREAM_TOKEN_URL: 'https://auth.example.com/token',
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_CLIENT_SECRET: 'cleanup-test-secret-value',
      REDIS_URL: redis.url,
      CACHE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
    });
    // A step after Redis that fails: an upstream with neither a token URL nor an issuer.
    const [first] = config.upstreams;
    if (!first) throw new Error('no upstream');
    const broken = { ...config, upstreams: [{ ...first, config: { ...first.config, tokenUrl: undefined } }] };
    await expect(
      createBroker({ config: broken, logger: captureLogs().logger, clock: systemClock }),
    ).rejects.toThrow(/tokenUrl or config.issuer/);
    await expect.poll(brokerClients, { timeout: 5_000 }).toEqual([]);

    // The same config whole: the broker connects, and closing it leaves nothing either.
    const broker = await createBroker({ config, logger: captureLogs().logger, clock: systemClock });
    expect((await brokerClients()).length).toBeGreaterThan(0);
    await broker.close();
    await expect.poll(brokerClients, { timeout: 5_000 }).toEqual([]);
  });
});
