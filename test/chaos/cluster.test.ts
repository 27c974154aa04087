import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from '../support/brokerProcess.js';
import { type RedisCluster, startRedisCluster } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import {
  call,
  createFleet,
  eventually,
  type Fleet,
  origin,
  startUpstream,
  type UpstreamLog,
} from './chaosFleet.js';

const noRedisServer = await missing('redis-server');

describe.skipIf(noRedisServer)('a fleet on a three-master Redis Cluster', () => {
  let cluster: RedisCluster;
  let upstream: UpstreamLog;
  let fleet: Fleet;
  let brokers: BrokerProcess[];
  let admin: Cluster;

  beforeAll(async () => {
    [cluster, upstream] = await Promise.all([startRedisCluster(), startUpstream(3600)]);
    fleet = await createFleet(upstream.server.tokenUrl, {
      REDIS_CLUSTER_NODES: cluster.seeds,
      RATE_LIMIT_CLIENT_TOKEN: '12/minute',
    });
    brokers = await Promise.all([fleet.start(), fleet.start()]);
    admin = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0]?.port as number }]);
  }, 90_000);

  afterAll(async () => {
    admin?.disconnect();
    await fleet?.stop();
    await Promise.all([cluster?.stop(), upstream?.server.close()]);
  });

  /** Every key of this fleet, on whichever master holds it. */
  async function fleetKeys(): Promise<string[]> {
    const prefix = fleet.env.REDIS_KEY_PREFIX as string;
    const perNode = await Promise.all(admin.nodes('master').map((node) => node.keys(`*${prefix}*`)));
    return perNode.flat();
  }

  it('when 200 cold callers spread over the replicas, then the upstream is asked once, and the token, its lock and fence share one hash slot', async () => {
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, index) => fleet.upstreamToken(brokers[index % 2] as BrokerProcess)),
    );
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    expect(new Set(answers.map((answer) => answer.json().access_token))).toEqual(new Set(upstream.issued));
    expect(upstream.requestedAt).toHaveLength(1);

    const prefix = fleet.env.REDIS_KEY_PREFIX as string;
    const tagged = (await fleetKeys()).filter((key) => key.startsWith(`{${prefix}}`));
    expect(tagged.some((key) => key.includes('upstream-token:'))).toBe(true);
    expect(tagged.some((key) => key.includes('fence:'))).toBe(true);
    const slots = await Promise.all(tagged.map((key) => admin.cluster('KEYSLOT', key)));
    expect(new Set(slots).size).toBe(1);
  });

  it('when a token is revoked on one replica, then the other refuses it within 1 s, and a replica started later too', async () => {
    const token = await fleet.clientToken(brokers[0] as BrokerProcess);
    expect(await fleet.isActive(brokers[1] as BrokerProcess, token)).toBe(true);
    expect((await fleet.revoke(brokers[0] as BrokerProcess, token)).status).toBe(200);
    expect(
      await eventually(async () => !(await fleet.isActive(brokers[1] as BrokerProcess, token)), 1_000),
    ).toBe(true);
    const late = await fleet.start();
    expect(await fleet.isActive(late, token)).toBe(false);
  }, 60_000);

  it('when requests are spread over the replicas, then the rate limit counted on the cluster holds for the fleet', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        call(`${brokers[index % 2]?.url}/api/client-token`, { method: 'POST', headers: { origin } }),
      ),
    );
    // One token was minted by the revocation test from this IP already.
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(11);
    expect(answers.filter((answer) => answer.status === 429)).toHaveLength(9);
  });
});
