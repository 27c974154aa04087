import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { type CallCounter, createCallCounter } from '../../src/store/callCounter.js';
import { createRedisConnections, type RedisConnections } from '../../src/store/redisConnection.js';
import type { RedisTarget } from '../../src/store/redisTarget.js';
import { captureLogs } from '../support/logs.js';
import { singleRedis, startRedisCluster, startRedisServer } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../support/sharedRedis.js';

const noRedis = await missing('redis');
const noRedisServer = await missing('redis-server');

const redisUrl = sharedRedisUrl;
const { admin, prefix: newPrefix } = sharedRedisScratch('calls');
const prefix = newPrefix();
const opened: RedisConnections[] = [];

afterAll(async () => {
  await Promise.all(opened.map((connections) => connections.close()));
});

async function connect(target: RedisTarget = singleRedis(redisUrl)) {
  const { logger } = captureLogs();
  const connections = createRedisConnections({ target, logger, maxReconnectDelayMs: 100 });
  opened.push(connections);
  expect(await connections.ready(5_000)).toBe('ok');
  return connections;
}

/** A replica's counter on the shared Redis, counting the leases (Redis round trips) it makes. */
function replica(connections: RedisConnections, leaseSize: number, clock = createManualClock(Date.now())) {
  const logs = captureLogs();
  const client = connections.client;
  let leases = 0;
  const counted = new Proxy(client, {
    get(target, property, receiver) {
      if (property !== 'eval') return Reflect.get(target, property, receiver);
      return (...args: Parameters<typeof client.eval>) => {
        leases += 1;
        return target.eval(...args);
      };
    },
  });
  const counter = createCallCounter({
    clock,
    maxEntries: 1_000,
    redis: { client: counted, prefix, leaseSize, logger: logs.logger },
  });
  return { counter, leases: () => leases, logs };
}

async function takeMany(counter: CallCounter, key: string, limit: number, count: number, expiresAt: number) {
  let allowed = 0;
  for (let i = 0; i < count; i += 1) if (await counter.take(key, limit, expiresAt)) allowed += 1;
  return allowed;
}

describe('call counter without Redis', () => {
  it('when a key reaches its limit, then take answers synchronously, true up to the limit and false after', () => {
    const clock = createManualClock();
    const counter = createCallCounter({ clock, maxEntries: 10 });
    const answers = Array.from({ length: 5 }, () => counter.take('a', 3, clock.now() + 1_000));
    expect(answers).toEqual([true, true, true, false, false]);
    expect(counter.used('a')).toBe(3);
    expect(counter.take('b', 3, clock.now() + 1_000)).toBe(true);
  });

  it('when a key expires, then its count starts over', () => {
    const clock = createManualClock();
    const counter = createCallCounter({ clock, maxEntries: 10 });
    expect(counter.take('a', 1, clock.now() + 1_000)).toBe(true);
    expect(counter.take('a', 1, clock.now() + 1_000)).toBe(false);
    clock.advance(1_000);
    expect(counter.used('a')).toBe(0);
    expect(counter.take('a', 1, clock.now() + 1_000)).toBe(true);
  });

  it('when more keys arrive than maxEntries, then the oldest is forgotten and the map stays at the cap', () => {
    const clock = createManualClock();
    const counter = createCallCounter({ clock, maxEntries: 3 });
    for (const key of ['a', 'b', 'c', 'd']) counter.take(key, 1, clock.now() + 60_000);
    expect(counter.used('a')).toBe(0);
    expect(['b', 'c', 'd'].map((key) => counter.used(key))).toEqual([1, 1, 1]);
  });
});

describe.skipIf(noRedis)('call counter leasing from Redis', () => {
  it('when one replica spends a limit of 100 with leases of 20, then it makes a handful of round trips, not 100', async () => {
    const { counter, leases } = replica(await connect(), 20);
    const key = `one-${randomBytes(4).toString('hex')}`;
    expect(await takeMany(counter, key, 100, 120, Date.now() + 60_000)).toBe(100);
    // 20 × 4, then halves of what is left (10, 5, 3, 1, 1), then one lease that finds the limit reached.
    expect(leases()).toBeLessThanOrEqual(11);
    expect(Number(await admin.get(`${prefix}${key}`))).toBe(100);
  });

  it('when two replicas spend one key in turns, then together they serve exactly the limit', async () => {
    const connections = await connect();
    const [a, b] = [replica(connections, 10), replica(connections, 10)];
    const key = `two-${randomBytes(4).toString('hex')}`;
    let allowed = 0;
    for (let i = 0; i < 80; i += 1) {
      if (await (i % 2 === 0 ? a : b).counter.take(key, 50, Date.now() + 60_000)) allowed += 1;
    }
    expect(allowed).toBe(50);
    expect(Number(await admin.get(`${prefix}${key}`))).toBe(50);
  });

  it('when many calls of one key arrive at once, then they wait for one lease in flight', async () => {
    const { counter, leases } = replica(await connect(), 50);
    const key = `burst-${randomBytes(4).toString('hex')}`;
    const answers = await Promise.all(
      Array.from({ length: 30 }, () => counter.take(key, 1_000, Date.now() + 60_000)),
    );
    expect(answers.every(Boolean)).toBe(true);
    expect(leases()).toBe(1);
  });

  it('when Redis lost the count (restarted empty), then the next lease resumes above what the replica saw', async () => {
    const { counter } = replica(await connect(), 5);
    const key = `lost-${randomBytes(4).toString('hex')}`;
    expect(await takeMany(counter, key, 100, 5, Date.now() + 60_000)).toBe(5);
    await admin.del(`${prefix}${key}`);
    expect(await counter.take(key, 100, Date.now() + 60_000)).toBe(true);
    expect(Number(await admin.get(`${prefix}${key}`))).toBe(10);
  });

  it('when the key is written, then Redis forgets it when the count may be forgotten', async () => {
    const clock = createManualClock(Date.now());
    const { counter } = replica(await connect(), 5, clock);
    const key = `ttl-${randomBytes(4).toString('hex')}`;
    await counter.take(key, 100, clock.now() + 30_000);
    const ttl = await admin.pttl(`${prefix}${key}`);
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
  });
});

describe.skipIf(noRedisServer)('call counter on a Redis Cluster', () => {
  it('when two replicas spend six keys on a three-master cluster, then each key stops at its limit and no lease fails', async () => {
    const cluster = await startRedisCluster();
    try {
      const connections = await connect({
        mode: 'cluster',
        nodes: cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })),
        username: undefined,
        password: undefined,
        tls: undefined,
      });
      const [a, b] = [replica(connections, 3), replica(connections, 3)];
      const keys = Array.from({ length: 6 }, (_, i) => `cluster-${i}-${randomBytes(4).toString('hex')}`);
      for (const key of keys) {
        let allowed = 0;
        for (let i = 0; i < 14; i += 1) {
          if (await (i % 2 === 0 ? a : b).counter.take(key, 10, Date.now() + 60_000)) allowed += 1;
        }
        expect(allowed, key).toBe(10);
      }
      expect([...a.logs.lines(), ...b.logs.lines()].filter((line) => line.level === 'warn')).toEqual([]);
    } finally {
      await cluster.stop();
    }
  }, 30_000);
});

describe.skipIf(noRedisServer)('call counter while Redis is down', () => {
  it('when Redis cannot be reached, then the replica counts alone up to the limit, logs once, and writes its count back as the floor', async () => {
    const server = await startRedisServer();
    const direct = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      const connections = await connect(singleRedis(server.url));
      const { counter, logs } = replica(connections, 4);
      const spent = `spent-${randomBytes(4).toString('hex')}`;
      const open = `open-${randomBytes(4).toString('hex')}`;
      expect(await takeMany(counter, spent, 10, 2, Date.now() + 60_000)).toBe(2);
      await server.kill();
      // Fails open to a local count: the limit still holds on this replica.
      expect(await takeMany(counter, spent, 10, 12, Date.now() + 60_000)).toBe(8);
      expect(await takeMany(counter, open, 100, 3, Date.now() + 60_000)).toBe(3);
      const warnings = logs.lines().filter((line) => line.level === 'warn');
      expect(warnings.map((line) => line.msg)).toEqual([
        'call counter unreachable: budgets and quotas are counted by this replica alone meanwhile',
      ]);

      await server.start();
      await expect.poll(() => connections.status(), { timeout: 5_000 }).toBe('ok');
      expect(await takeMany(counter, open, 100, 2, Date.now() + 60_000)).toBe(2);
      // The restarted Redis is empty: the lease raised it to the 4 calls counted alone, then leased 4 more.
      await direct.connect();
      expect(Number(await direct.get(`${prefix}${open}`))).toBe(8);
      expect(logs.lines().map((line) => line.msg)).toContain(
        'call counter reachable again: counting with the fleet',
      );
    } finally {
      direct.disconnect();
      await server.stop();
    }
  });
});
