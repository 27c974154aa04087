import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  createFleet,
  type Fleet,
  logAfter,
  origin,
  startUpstream,
  type UpstreamLog,
} from '../chaos/chaosFleet.js';
import { type ApiServer, startFixedApi } from '../support/apiServers.js';
import { type RedisServer, startRedisServer } from '../support/redisServers.js';

/**
 * Issue #24 defect 5: a replica that had never proxied, with Redis stalled (SIGSTOP) and a command
 * timeout of 1 s, took about 4 s to answer its first proxied call: the rate limit, the token store, the
 * renewal lock and the write-back each waited out the timeout. docs/fleet.md promises one.
 */
describe('a cold replica and a stalled Redis', () => {
  let redis: RedisServer;
  let upstream: UpstreamLog;
  let api: ApiServer;
  let fleet: Fleet;

  beforeAll(async () => {
    [redis, upstream, api] = await Promise.all([startRedisServer(), startUpstream(3600), startFixedApi()]);
    fleet = await createFleet(upstream.server.tokenUrl, {
      REDIS_URL: redis.url,
      REDIS_COMMAND_TIMEOUT_MS: '1000',
      UPSTREAM_API_URL: api.origin,
    });
  }, 60_000);

  afterAll(async () => {
    redis?.resume();
    await fleet?.stop();
    await Promise.all([redis?.stop(), upstream?.server.close(), api?.close()]);
  });

  it('when Redis stalls before its first proxied call, then that call waits one command timeout, not one per step', async () => {
    const replica = await fleet.start();
    await logAfter(replica, 'redis connected', 0);
    const token = await fleet.clientToken(replica);
    redis.pause();
    const first = await call(`${replica.url}/api/proxy/first`, {
      headers: { origin, authorization: `Bearer ${token}` },
    });
    expect(first.status).toBe(200);
    expect(upstream.issued).toHaveLength(1);
    // One timeout (1 s) and the upstream's answer; four timeouts took 4 s. Headroom for a loaded machine.
    expect(first.ms).toBeGreaterThanOrEqual(900);
    expect(first.ms).toBeLessThan(2_500);
    // While Redis is still stalled, later calls fail fast at every step.
    const second = await call(`${replica.url}/api/proxy/second`, {
      headers: { origin, authorization: `Bearer ${token}` },
    });
    expect(second.status).toBe(200);
    expect(second.ms).toBeLessThan(900);
    redis.resume();
    await logAfter(replica, 'redis is back', 0);
  }, 60_000);
});
