import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { createRevocationList } from '../../src/signing/revocations.js';
import { createRedisConnections, type RedisConnections } from '../../src/store/redisConnection.js';
import { createRedisLock, fenceKey } from '../../src/store/redisLock.js';
import { createRedisRevocations } from '../../src/store/redisRevocations.js';
import type { FleetLock } from '../../src/store/types.js';
import { LockUnreachable, renewAcrossFleet } from '../../src/upstream/fleetRenewal.js';
import { createRedisQuotaCounter } from '../../src/upstream/quota.js';
import { captureLogs } from '../support/logs.js';
import { singleRedis } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../support/sharedRedis.js';

const noRedis = await missing('redis');

/** What each replica writes back when the shared Redis forgot (simulated here by deleting the keys). */

const redisUrl = sharedRedisUrl;
const { admin, prefix: newPrefix } = sharedRedisScratch('writeback');
const prefix = newPrefix();
const opened: RedisConnections[] = [];

afterAll(async () => {
  await Promise.all(opened.map((connections) => connections.close()));
});

async function connect(): Promise<RedisConnections> {
  const connections = createRedisConnections({
    target: singleRedis(redisUrl),
    logger: captureLogs().logger,
    maxReconnectDelayMs: 100,
  });
  opened.push(connections);
  expect(await connections.ready(3_000)).toBe('ok');
  return connections;
}

describe.skipIf(noRedis)('write-back after Redis lost data', () => {
  it('when the revocation set is emptied, then the next resync writes back every revocation the replica holds', async () => {
    const connections = await connect();
    const { logger, lines } = captureLogs();
    const local = createRevocationList({ clock: systemClock, clockToleranceSeconds: 5 });
    const list = createRedisRevocations({
      redis: connections,
      prefix,
      local,
      clock: systemClock,
      logger,
      clockToleranceSeconds: 5,
      resyncIntervalMs: 100,
    });
    await list.ready;
    const exp = Math.floor(Date.now() / 1000) + 600;
    await list.revoke('jti-kept-1', exp);
    await list.revoke('jti-kept-2', exp + 1);
    await admin.del(`${prefix}revocations`);
    const deadline = Date.now() + 3_000;
    while ((await admin.zcard(`${prefix}revocations`)) < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await admin.zrange(`${prefix}revocations`, '0', '-1', 'WITHSCORES')).toEqual([
      'jti-kept-1',
      String(exp),
      'jti-kept-2',
      String(exp + 1),
    ]);
    expect(lines().some((line) => String(line.msg).startsWith('redis had lost revocations'))).toBe(true);
    list.close();
  });

  it('when the quota count is lost mid-window, then counting resumes above what the replica last saw', async () => {
    const { client } = await connect();
    const counter = createRedisQuotaCounter({ client, prefix });
    for (let i = 0; i < 3; i += 1) await counter.increment('window-lost', 60_000);
    await admin.del(`${prefix}window-lost`);
    expect(await counter.current('window-lost')).toBe(3);
    expect(await counter.increment('window-lost', 60_000)).toBe(4);
    expect(Number(await admin.get(`${prefix}window-lost`))).toBe(4);
    expect(await admin.pttl(`${prefix}window-lost`)).toBeGreaterThan(50_000);
  });

  it('when the fence counter is lost, then the next lease still gets a higher fence than any this replica saw', async () => {
    const { client } = await connect();
    const lock = createRedisLock({ client, prefix, logger: captureLogs().logger, ttlMs: 1_000 });
    const first = await lock.tryAcquire('fenced');
    await first?.release();
    const second = await lock.tryAcquire('fenced');
    await second?.release();
    await admin.del(fenceKey(prefix, 'fenced'));
    const third = await lock.tryAcquire('fenced');
    await third?.release();
    expect(third?.fence).toBe((second?.fence ?? 0) + 1);
  });
});

describe.skipIf(noRedis)('a renewal while the fleet lock is unreachable', () => {
  const unreachable: FleetLock = {
    tryAcquire: () => Promise.reject(new Error('connection is closed')),
  };
  const options = (fetched: string[]) => ({
    lock: unreachable,
    name: 'k',
    reload: async () => undefined,
    fetch: async () => {
      fetched.push('upstream');
      return 'token';
    },
    logger: captureLogs().logger,
    waitMs: 1_000,
  });

  it('when the caller holds a token with time left, then nothing is asked upstream and LockUnreachable is thrown', async () => {
    const fetched: string[] = [];
    await expect(
      renewAcrossFleet({ ...options(fetched), renewWithoutLock: () => false }),
    ).rejects.toBeInstanceOf(LockUnreachable);
    expect(fetched).toEqual([]);
  });

  it('when the caller has no token to serve, then it renews alone', async () => {
    const fetched: string[] = [];
    expect(await renewAcrossFleet(options(fetched))).toEqual({ value: 'token', source: 'upstream' });
    expect(fetched).toEqual(['upstream']);
  });
});
