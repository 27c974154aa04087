import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createMemoryReplayCache, createRedisReplayCache } from '../../src/dpop/replayCache.js';
import { closedPort } from '../support/apiServers.js';
import { captureLogs } from '../support/logs.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch } from '../support/sharedRedis.js';

const noRedis = await missing('redis');

describe('memory replay cache', () => {
  it('when a key is checked twice within its ttl, then only the first check passes', async () => {
    const clock = createManualClock();
    const cache = createMemoryReplayCache({ clock });
    expect(await cache.checkAndRemember('a', 1_000)).toBe('new');
    clock.advance(999);
    expect(await cache.checkAndRemember('a', 1_000)).toBe('replay');
    clock.advance(1);
    expect(await cache.checkAndRemember('a', 1_000)).toBe('new');
  });

  it('when many checks of one key run at once, then exactly one passes', async () => {
    const cache = createMemoryReplayCache({ clock: createManualClock() });
    const results = await Promise.all(
      Array.from({ length: 50 }, () => cache.checkAndRemember('same', 60_000)),
    );
    expect(results.filter((result) => result === 'new')).toHaveLength(1);
  });

  it('when the cache is full of live keys, then the oldest is forgotten rather than a new key refused', async () => {
    const clock = createManualClock();
    const cache = createMemoryReplayCache({ clock, maxEntries: 2 });
    expect(await cache.checkAndRemember('a', 1_000)).toBe('new');
    expect(await cache.checkAndRemember('b', 5_000)).toBe('new');
    expect(await cache.checkAndRemember('c', 1_000)).toBe('new');
    expect(await cache.checkAndRemember('b', 1_000)).toBe('replay');
    expect(await cache.checkAndRemember('c', 1_000)).toBe('replay');
  });

  it('when one owner reaches its share, then its new keys are refused and other owners are untouched', async () => {
    const clock = createManualClock();
    const cache = createMemoryReplayCache({ clock, maxEntries: 100, maxPerOwner: 3 });
    expect(await cache.checkAndRemember('honest-1', 10_000, 'honest')).toBe('new');
    for (const key of ['x1', 'x2', 'x3'])
      expect(await cache.checkAndRemember(key, 1_000, 'flood')).toBe('new');
    expect(await cache.checkAndRemember('x4', 1_000, 'flood')).toBe('owner_full');
    expect(await cache.checkAndRemember('x1', 1_000, 'flood')).toBe('replay');
    expect(await cache.checkAndRemember('honest-2', 10_000, 'honest')).toBe('new');
    expect(await cache.checkAndRemember('honest-1', 10_000, 'honest')).toBe('replay');
    clock.advance(1_000);
    // The flood's entries expired: its share is free again.
    expect(await cache.checkAndRemember('x4', 1_000, 'flood')).toBe('new');
  });
});

describe.skipIf(noRedis)('Redis replay cache', () => {
  const { admin: client, prefix: newPrefix } = sharedRedisScratch('dpop');
  const prefix = newPrefix();

  function replica() {
    const clock = createManualClock();
    return createRedisReplayCache({
      client,
      prefix,
      local: createMemoryReplayCache({ clock }),
      logger: captureLogs().logger,
    });
  }

  it('when a proof seen by one replica is replayed to another, then the other refuses it', async () => {
    const [one, two] = [replica(), replica()];
    const key = randomBytes(16).toString('base64url');
    expect(await one.checkAndRemember(key, 60_000)).toBe('new');
    expect(await two.checkAndRemember(key, 60_000)).toBe('replay');
    const ttl = await client.pttl(`${prefix}dpop-jti:${key}`);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('when two replicas check one new proof at the same moment, then exactly one accepts it', async () => {
    const replicas = Array.from({ length: 8 }, () => replica());
    const key = randomBytes(16).toString('base64url');
    const results = await Promise.all(replicas.map((cache) => cache.checkAndRemember(key, 60_000)));
    expect(results.filter((result) => result === 'new')).toHaveLength(1);
  });

  it('when Redis is unreachable, then the replica still refuses a proof it has seen itself', async () => {
    const down = new Redis(`redis://127.0.0.1:${await closedPort()}`, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      lazyConnect: true,
    });
    down.on('error', () => {});
    const logs = captureLogs();
    const cache = createRedisReplayCache({
      client: down,
      prefix,
      local: createMemoryReplayCache({ clock: createManualClock() }),
      logger: logs.logger,
    });
    expect(await cache.checkAndRemember('k', 60_000)).toBe('new');
    expect(await cache.checkAndRemember('k', 60_000)).toBe('replay');
    expect(logs.lines().some((line) => String(line.msg).includes('replay check is local'))).toBe(true);
    down.disconnect();
  });
});
