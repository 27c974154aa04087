import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from '../support/brokerProcess.js';
import { type SentinelGroup, startSentinelGroup } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import { sleep } from '../support/waiting.js';
import {
  createFleet,
  eventually,
  type Fleet,
  gaps,
  jtiOf,
  logAfter,
  startUpstream,
  type UpstreamLog,
} from './chaosFleet.js';

const noRedisServer = await missing('redis-server');

describe.skipIf(noRedisServer)('Sentinel: the master is killed under load and the replica promoted', () => {
  let group: SentinelGroup;
  let upstream: UpstreamLog;
  let fleet: Fleet;
  let brokers: BrokerProcess[];
  const lifetimeSeconds = 10;

  beforeAll(async () => {
    [group, upstream] = await Promise.all([
      startSentinelGroup({ downAfterMs: 500 }),
      startUpstream(lifetimeSeconds),
    ]);
    fleet = await createFleet(upstream.server.tokenUrl, {
      REDIS_SENTINELS: group.sentinels,
      REDIS_SENTINEL_NAME: group.name,
      REDIS_COMMAND_TIMEOUT_MS: '500',
    });
    brokers = await Promise.all([fleet.start(), fleet.start(), fleet.start()]);
  }, 90_000);

  afterAll(async () => {
    await fleet?.stop();
    await Promise.all([group?.stop(), upstream?.server.close()]);
  });

  it('when the master dies, then tokens keep being served, no revocation is lost, and each renewal asks the upstream once', async () => {
    for (const broker of brokers) expect((await fleet.upstreamToken(broker)).status).toBe(200);
    expect(upstream.requestedAt).toHaveLength(1);
    const tokens = await Promise.all(
      brokers.flatMap((broker) => [fleet.clientToken(broker), fleet.clientToken(broker)]),
    );
    const revoked: string[] = [];

    // Load: every replica serves upstream tokens, mints client tokens (rate-limited through Redis) and
    // introspects, without a pause, from before the kill until after the promotion.
    const answers: { at: number; status: number }[] = [];
    let running = true;
    const load = Promise.all(
      brokers.map(async (broker) => {
        while (running) {
          const round = await Promise.all([
            fleet.upstreamToken(broker),
            fleet.upstreamToken(broker),
            fleet.clientToken(broker).then(
              () => ({ status: 200 }),
              () => ({ status: 0 }),
            ),
          ]);
          const at = Date.now();
          answers.push(...round.map(({ status }) => ({ at, status })));
        }
      }),
    );
    // The kill comes 1 s before the first renewal is due (half-way through the token's 10 s life), so
    // the renewal falls in the failover and must wait for the lock instead of going out from every replica.
    await sleep((upstream.requestedAt[0] as number) + (lifetimeSeconds * 1000) / 2 - 1_000 - Date.now());
    // Revoked just before the kill: the last may not have reached the replica yet (replication is async).
    for (const [index, token] of tokens.slice(0, 3).entries()) {
      expect((await fleet.revoke(brokers[index] as BrokerProcess, token)).status).toBe(200);
      revoked.push(token);
    }
    const killedAt = Date.now();
    await group.master.kill();
    // Revoked while no master exists: they must reach the promoted one.
    await logAfter(brokers[0] as BrokerProcess, 'redis unreachable', killedAt);
    for (const [index, token] of tokens.slice(3).entries()) {
      expect((await fleet.revoke(brokers[index] as BrokerProcess, token)).status).toBe(200);
      revoked.push(token);
    }
    const back = await Promise.all(
      brokers.map((broker) => logAfter(broker, 'redis is back', killedAt, 30_000)),
    );
    const failoverMs = Math.max(...back.map((line) => Date.parse(String(line.time)) - killedAt));
    expect(await group.currentMasterPort()).toBe(group.replica.port);
    // Until the deferred renewal has been made by one replica and adopted by the others.
    expect(
      await eventually(async () => {
        const served = await Promise.all(brokers.map((broker) => fleet.upstreamToken(broker)));
        return served.every((answer) => answer.json().access_token === upstream.issued[1]);
      }, 10_000),
    ).toBe(true);
    running = false;
    await load;

    const failed = answers.filter((answer) => answer.status !== 200);
    console.log(
      `sentinel failover: fleet back after ${failoverMs} ms; ${failed.length} of ${answers.length} requests failed; upstream requests ${upstream.requestedAt.length}, ${gaps(upstream.requestedAt).join(', ')} ms apart`,
    );
    expect(failed).toEqual([]);
    expect(failoverMs).toBeLessThan(10_000);

    // Each renewal made one upstream request: a token is renewed half-way through its life at the
    // earliest, so a request sooner after the previous one would be a second request for one renewal.
    expect(upstream.requestedAt.length).toBeGreaterThanOrEqual(2);
    for (const gap of gaps(upstream.requestedAt))
      expect(gap).toBeGreaterThan((lifetimeSeconds * 1000) / 2 - 300);

    // No revocation lost: the promoted master holds all six, and every replica, old or new, refuses them.
    const promoted = new Redis(group.replica.url);
    try {
      const key = `${fleet.env.REDIS_KEY_PREFIX}revocations`;
      expect(
        await eventually(async () => {
          const scores = await Promise.all(revoked.map((token) => promoted.zscore(key, jtiOf(token))));
          return scores.every((score) => score !== null);
        }, 5_000),
      ).toBe(true);
    } finally {
      promoted.disconnect();
    }
    const late = await fleet.start();
    for (const broker of [...brokers, late]) {
      for (const token of revoked) expect(await fleet.isActive(broker, token)).toBe(false);
    }
    expect(await fleet.isActive(late, tokens[0] as string)).toBe(false);
  }, 90_000);
});
