import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { RedisClient } from '../store/redisConnection.js';

/**
 * Remembers the DPoP proofs already seen, so each is accepted once (RFC 9449 §11.1). A proof is only
 * acceptable while its `iat` is inside the verifier's window, so it need only be remembered until then.
 */
export interface ReplayCache {
  /**
   * True when `key` was not seen in the last `ttlMs` and is now remembered for `ttlMs`; false for a
   * replay, or when the cache cannot promise to remember it (a replay cache that forgets proves nothing).
   * Atomic: of two concurrent calls with one key, one gets true.
   */
  checkAndRemember(key: string, ttlMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface MemoryReplayCacheOptions {
  clock: Clock;
  /**
   * Most proofs remembered at once. When every entry is still live, new proofs are refused rather than
   * an old one forgotten: size it above the proofs a replica verifies within twice the proof window.
   */
  maxEntries?: number;
}

/**
 * A process-local ReplayCache: the default, and each replica's first check when Redis is shared. The
 * check and the write happen in one synchronous step, so concurrent requests cannot both pass.
 */
export function createMemoryReplayCache({
  clock,
  maxEntries = 200_000,
}: MemoryReplayCacheOptions): ReplayCache {
  const seen = new Map<string, number>();
  // No entry expires before this instant, so a sweep before it would free nothing: a flood against a
  // full cache costs one comparison per proof, not a walk over every entry.
  let nextExpiryAt = Number.POSITIVE_INFINITY;

  function sweep(now: number): void {
    nextExpiryAt = Number.POSITIVE_INFINITY;
    for (const [key, expiresAt] of seen) {
      if (expiresAt <= now) seen.delete(key);
      else nextExpiryAt = Math.min(nextExpiryAt, expiresAt);
    }
  }

  return {
    async checkAndRemember(key, ttlMs) {
      const now = clock.now();
      const expiresAt = seen.get(key);
      if (expiresAt !== undefined && expiresAt > now) return false;
      if (seen.size >= maxEntries && now >= nextExpiryAt) sweep(now);
      if (seen.size >= maxEntries) return false;
      const until = now + Math.max(ttlMs, 1);
      seen.set(key, until);
      nextExpiryAt = Math.min(nextExpiryAt, until);
      return true;
    },
    async close() {
      seen.clear();
      nextExpiryAt = Number.POSITIVE_INFINITY;
    },
  };
}

export interface RedisReplayCacheOptions {
  client: RedisClient;
  /** Prepended to every key, like the store's (`REDIS_KEY_PREFIX`). */
  prefix: string;
  /** This replica's own cache: checked first, and the only one while Redis is away. */
  local: ReplayCache;
  logger: Logger;
}

/**
 * A ReplayCache shared by the fleet: `SET key 1 NX PX ttl` is one atomic check-and-write, so a proof
 * replayed to another replica is refused too. Every proof is also remembered locally; while Redis is
 * unreachable that local memory alone answers, so a replica never accepts a proof twice itself, though
 * a proof could then be used once on each replica (the outage itself is logged by the Redis connection).
 */
export function createRedisReplayCache({
  client,
  prefix,
  local,
  logger,
}: RedisReplayCacheOptions): ReplayCache {
  return {
    async checkAndRemember(key, ttlMs) {
      if (!(await local.checkAndRemember(key, ttlMs))) return false;
      try {
        const written = await client.set(
          `${prefix}dpop-jti:${key}`,
          '1',
          'PX',
          Math.max(Math.ceil(ttlMs), 1),
          'NX',
        );
        return written === 'OK';
      } catch (error) {
        // The connection logs the outage once; this line would repeat for every proof.
        logger.debug({ err: error }, 'redis unreachable: DPoP replay check is local to this replica');
        return true;
      }
    },
    async close() {
      await local.close();
    },
  };
}
