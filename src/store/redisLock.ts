import { randomBytes } from 'node:crypto';
import type { Logger } from '../telemetry/logger.js';
import { incrementAboveFloor } from './floorCounter.js';
import type { RedisClient } from './redisConnection.js';
import type { FleetLock, LockLease } from './types.js';

/** Redis key of the lock on `name`. */
export const lockKey = (prefix: string, name: string) => `${prefix}lock:${name}`;
/** Redis key of the fencing counter of `name`: the highest fence ever granted on it. */
export const fenceKey = (prefix: string, name: string) => `${prefix}fence:${name}`;

/** The counter outlives any lease by far; it only needs to survive as long as a stale holder could. */
const fenceTtlMs = 7 * 24 * 3_600_000;

// SET NX PX takes the lock; INCR in the same script hands out the fence, so no other lease can slip in.
// ARGV[4] is the highest fence this replica has seen: a counter Redis lost restarts above it, not at 1,
// so a holder from before the loss still counts as older than every lease granted after it.
const acquireScript = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
${incrementAboveFloor({ key: 'KEYS[2]', floor: 'ARGV[4]', ttlMs: 'ARGV[3]' })}
  return count
end
return 0`;

// Only the holder's own token may extend or release: a lapsed holder must not touch a successor's lock.
const extendScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface RedisLockOptions {
  client: RedisClient;
  prefix: string;
  logger: Logger;
  /** How long a lease lives unless extended; a dead holder blocks others for at most this long. */
  ttlMs: number;
}

/**
 * The fleet-wide renewal lock (Redis `SET key token NX PX`, after the single-instance pattern of
 * https://redis.io/docs/latest/develop/use/patterns/distributed-locks/). While the holder works, its
 * lease is extended every third of the TTL, so a slow upstream request does not let a second replica
 * in; a holder killed mid-request stops extending and its lease lapses after `ttlMs`. Each lease
 * carries a fence from `INCR`, and fenced writes (see `redisStore`) refuse a holder older than the
 * newest, which covers the case the extension cannot: a holder paused past its lease.
 */
export function createRedisLock({ client, prefix, logger, ttlMs }: RedisLockOptions): FleetLock {
  /** Per lock name, the highest fence granted to this replica (a handful of names: one per token). */
  const highest = new Map<string, number>();
  return {
    async tryAcquire(name) {
      const key = lockKey(prefix, name);
      const token = randomBytes(16).toString('base64url');
      const fence = Number(
        await client.eval(
          acquireScript,
          2,
          key,
          fenceKey(prefix, name),
          token,
          ttlMs,
          fenceTtlMs,
          highest.get(name) ?? 0,
        ),
      );
      if (!(fence > 0)) return undefined;
      highest.set(name, fence);

      let lost = false;
      const extend = async () => {
        try {
          const extended = Number(await client.eval(extendScript, 1, key, token, ttlMs));
          if (extended === 1) return;
          lost = true;
          logger.warn({ fence }, 'renewal lock lapsed before it could be extended; writes stay fenced');
        } catch (error) {
          logger.debug({ err: error }, 'renewal lock extension failed; retrying at the next interval');
          return;
        }
        clearInterval(timer);
      };
      const timer = setInterval(() => void extend(), Math.max(50, Math.floor(ttlMs / 3)));
      timer.unref();

      const lease: LockLease = {
        fence,
        lost: () => lost,
        async release() {
          clearInterval(timer);
          try {
            await client.eval(releaseScript, 1, key, token);
          } catch (error) {
            // The lease lapses on its own after ttlMs.
            logger.debug({ err: error }, 'renewal lock release failed; it expires by itself');
          }
        },
      };
      return lease;
    },
  };
}
