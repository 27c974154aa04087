import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from '../support/brokerProcess.js';
import { mintToken, reply, startFakeTokenServer } from '../support/oauthServers.js';
import { type RedisServer, startRedisServer } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import { sleep, waitFor } from '../support/waiting.js';
import {
  createFleet,
  eventually,
  type Fleet,
  jtiOf,
  logAfter,
  startUpstream,
  type UpstreamLog,
} from './chaosFleet.js';

const noRedisServer = await missing('redis-server');

describe.skipIf(noRedisServer)('one private Redis that restarts empty or stalls', () => {
  let redis: RedisServer;
  let upstream: UpstreamLog;
  let fleet: Fleet;
  let one: BrokerProcess;
  let two: BrokerProcess;
  let admin: Redis;
  const revocationsKey = () => `${fleet.env.REDIS_KEY_PREFIX}revocations`;

  beforeAll(async () => {
    [redis, upstream] = await Promise.all([startRedisServer(), startUpstream(3600)]);
    fleet = await createFleet(upstream.server.tokenUrl, {
      REDIS_URL: redis.url,
      REDIS_COMMAND_TIMEOUT_MS: '300',
    });
    [one, two] = await Promise.all([fleet.start(), fleet.start()]);
    admin = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    admin.on('error', () => undefined);
  }, 60_000);

  afterAll(async () => {
    admin?.disconnect();
    await fleet?.stop();
    await Promise.all([redis?.stop(), upstream?.server.close()]);
  });

  it('when Redis restarts empty, then the replicas write their revocations and token back, and a replica started afterwards refuses the revoked token', async () => {
    expect((await fleet.upstreamToken(one)).status).toBe(200);
    const token = await fleet.clientToken(one);
    expect((await fleet.revoke(two, token)).status).toBe(200);
    expect(await eventually(async () => !(await fleet.isActive(one, token)), 1_000)).toBe(true);

    const lostAt = Date.now();
    await redis.kill();
    await redis.start();
    await Promise.all([one, two].map((broker) => logAfter(broker, 'redis is back', lostAt)));
    // Whichever replica resyncs first writes it back; the other then finds it there.
    await Promise.any([one, two].map((broker) => logAfter(broker, 'redis had lost revocations', lostAt)));
    expect(
      await eventually(async () => (await admin.zscore(revocationsKey(), jtiOf(token))) !== null, 3_000),
    ).toBe(true);

    const late = await fleet.start();
    expect(await fleet.isActive(late, token)).toBe(false);
    // The token the replicas held was written back too: the new replica takes it, the upstream is not asked.
    const served = await fleet.upstreamToken(late);
    expect(served.json().access_token).toBe(upstream.issued[0]);
    expect(upstream.requestedAt).toHaveLength(1);
  }, 60_000);

  it('when a token is revoked while Redis is down, then the revocation reaches Redis and the fleet once it returns', async () => {
    const token = await fleet.clientToken(two);
    const downAt = Date.now();
    await redis.kill();
    await logAfter(one, 'redis unreachable', downAt);
    const revoked = await fleet.revoke(one, token);
    expect(revoked.status).toBe(200);
    expect(await fleet.isActive(one, token)).toBe(false);
    await redis.start();
    expect(
      await eventually(async () => (await admin.zscore(revocationsKey(), jtiOf(token))) !== null, 5_000),
    ).toBe(true);
    expect(await eventually(async () => !(await fleet.isActive(two, token)), 3_000)).toBe(true);
  }, 30_000);

  it('when Redis stalls longer than the command timeout, then requests neither hang nor fail while a valid token is held', async () => {
    await Promise.all([one, two].map((broker) => logAfter(broker, 'redis is back', 0)));
    expect((await fleet.upstreamToken(two)).status).toBe(200);
    const token = await fleet.clientToken(one);
    const pausedAt = Date.now();
    redis.pause();
    const answers: { route: string; status: number; ms: number }[] = [];
    try {
      while (Date.now() - pausedAt < 2_000) {
        const round = await Promise.all([
          fleet.upstreamToken(one).then((answer) => ({ route: 'upstream-token', ...answer })),
          fleet.upstreamToken(two).then((answer) => ({ route: 'upstream-token', ...answer })),
          // Rate-limited: its counter is in Redis, so it waits for the command timeout, then fails open.
          fleet.clientToken(two).then(() => ({ route: 'client-token', status: 200, ms: 0 })),
          fleet
            .isActive(two, token)
            .then((active) => ({ route: 'introspect', status: active ? 200 : 0, ms: 0 })),
        ]);
        answers.push(...round.map(({ route, status, ms }) => ({ route, status, ms })));
      }
    } finally {
      redis.resume();
    }
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    // The command timeout is 300 ms: nothing waits for the 2 s stall.
    expect(Math.max(...answers.map((answer) => answer.ms))).toBeLessThan(1_500);
    expect(answers.length).toBeGreaterThan(8);
  }, 30_000);
});

describe.skipIf(noRedisServer)('the replica holding the renewal lease is SIGKILLed mid-renewal', () => {
  let redis: RedisServer;
  let fleet: Fleet;
  const requestedAt: number[] = [];
  const issued: string[] = [];
  const upstream = startFakeTokenServer((_req, res) => {
    requestedAt.push(Date.now());
    // The second request (the first renewal) never gets an answer: its replica is killed meanwhile.
    if (requestedAt.length === 2) return;
    const accessToken = mintToken('lease-access');
    issued.push(accessToken);
    reply(res, 200, {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: issued.length === 1 ? 4 : 3600,
    });
  });

  afterAll(async () => {
    await fleet?.stop();
    await Promise.all([redis?.stop(), (await upstream).close()]);
  });

  it('when the holder dies, then the fleet has a fresh token within the lease time, with at most 2 upstream requests', async () => {
    redis = await startRedisServer();
    const leaseMs = 1_000;
    fleet = await createFleet((await upstream).tokenUrl, {
      REDIS_URL: redis.url,
      REDIS_LOCK_TTL_MS: String(leaseMs),
      UPSTREAM_TIMEOUT_MS: '30000',
    });
    const brokers = await Promise.all([fleet.start(), fleet.start(), fleet.start()]);
    const first = await Promise.all(brokers.map((broker) => fleet.upstreamToken(broker)));
    expect(first.map((answer) => answer.json().access_token)).toEqual(brokers.map(() => issued[0]));
    // The 4 s token is renewed from about 2 s on, by whichever replica takes the lease first.
    const servedAt = Date.now();
    const holder = await Promise.race(
      brokers.map((broker) => logAfter(broker, 'renewal lease taken', servedAt, 10_000).then(() => broker)),
    );
    await waitFor(() => requestedAt.length >= 2, 10_000);
    // The holder keeps extending its lease while its request hangs.
    await sleep(leaseMs);
    await holder.kill();
    const killedAt = Date.now();
    const survivors = brokers.filter((broker) => broker !== holder);
    const fresh = await Promise.all(
      survivors.map(async (broker) => {
        const renewed = await eventually(
          async () => (await fleet.upstreamToken(broker)).json().access_token === issued[1],
          10_000,
        );
        return { renewed, afterMs: Date.now() - killedAt };
      }),
    );
    expect(fresh.map(({ renewed }) => renewed)).toEqual([true, true]);
    const takeoverMs = Math.max(...fresh.map(({ afterMs }) => afterMs));
    console.log(`lease holder SIGKILLed: fresh token on every survivor after ${takeoverMs} ms`);
    expect(takeoverMs).toBeLessThan(leaseMs + 1_000);
    expect(requestedAt).toHaveLength(3);
  }, 60_000);
});
