import type { Clock } from '../clock.js';
import type { Logger } from '../telemetry/logger.js';
import type { RedisClient } from './redisConnection.js';

/**
 * Counts calls against a limit per key (a client token's `jti`, an upstream's quota window). `take`
 * answers without awaiting anything while the replica holds calls it has already counted or leased, so
 * the proxy pays a map lookup per call, not a Redis round trip.
 */
export interface CallCounter {
  /**
   * Takes one call from `key`'s allowance of `limit`: true when it may go ahead, false once the limit
   * is spent. The count may be forgotten at `expiresAt` (ms since the epoch). Never rejects.
   */
  take(key: string, limit: number, expiresAt: number): boolean | Promise<boolean>;
  /** Calls counted on `key` as this replica knows it (fleet-wide with Redis, within the unspent leases). */
  used(key: string): number;
}

interface Entry {
  /** Leased from Redis and not spent yet (always 0 without Redis). */
  left: number;
  /** The highest count of the key this replica knows of: Redis's after a lease, its own without Redis. */
  seen: number;
  expiresAt: number;
  /** The lease on its way, which callers of the same key wait for (single flight). */
  lease: Promise<void> | undefined;
}

export interface CallCounterOptions {
  clock: Clock;
  /** Most keys remembered; past it the oldest is forgotten (see `docs/fleet.md` for what that costs). */
  maxEntries: number;
  /** Shares the counts with the fleet; without it each replica counts alone. */
  redis?: Shared | undefined;
}

interface Shared {
  client: RedisClient;
  /** Key prefix of this counter, e.g. `<REDIS_KEY_PREFIX>calls:budget:`. */
  prefix: string;
  /** Most calls leased in one round trip. */
  leaseSize: number;
  logger: Logger;
}

/**
 * Leases up to ARGV[2] calls of KEYS[1] against the limit ARGV[1]: half of what is left, so that near the
 * limit the replicas share the rest instead of one holding it all. The count never passes the limit, and
 * is raised to the floor ARGV[3] (the highest this replica saw) when Redis restarted empty.
 */
const leaseScript = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[3])
if used < floor then used = floor end
local limit = tonumber(ARGV[1])
local grant = math.min(tonumber(ARGV[2]), math.ceil((limit - used) / 2))
if grant < 0 then grant = 0 end
used = used + grant
redis.call('SET', KEYS[1], used, 'PX', ARGV[4])
return {grant, used}`;

/**
 * Without Redis a plain count per key. With Redis each replica leases blocks of calls (one round trip per
 * block) and counts them down locally; the fleet never serves more than the limit while Redis answers.
 * While Redis cannot be reached the counter fails open to a local count: each replica then allows up to
 * the limit on its own, as the token quota and the rate limits let requests through rather than refuse
 * them for want of a counter. Its count is written back as the floor once Redis answers again.
 */
export function createCallCounter({ clock, maxEntries, redis }: CallCounterOptions): CallCounter {
  const entries = new Map<string, Entry>();
  let unreachable = false;

  function entryFor(key: string, expiresAt: number): Entry {
    const now = clock.now();
    let entry = entries.get(key);
    if (entry !== undefined && entry.expiresAt > now) return entry;
    if (entry !== undefined) entries.delete(key);
    // Keys arrive roughly in expiry order, so the dead ones gather at the head of the map.
    for (const [oldKey, old] of entries) {
      if (old.expiresAt > now && entries.size < maxEntries) break;
      entries.delete(oldKey);
    }
    entry = { left: 0, seen: 0, expiresAt, lease: undefined };
    entries.set(key, entry);
    return entry;
  }

  async function lease(shared: Shared, key: string, entry: Entry, limit: number): Promise<void> {
    const ttlMs = Math.max(1, Math.ceil(entry.expiresAt - clock.now()));
    try {
      const [grant, used] = (await shared.client.eval(
        leaseScript,
        1,
        `${shared.prefix}${key}`,
        limit,
        shared.leaseSize,
        entry.seen,
        ttlMs,
      )) as [number, number];
      if (unreachable) shared.logger.info('call counter reachable again: counting with the fleet');
      unreachable = false;
      entry.left += Number(grant);
      entry.seen = Math.max(entry.seen, Number(used));
    } catch (error) {
      if (!unreachable) {
        shared.logger.warn(
          { err: error },
          'call counter unreachable: budgets and quotas are counted by this replica alone meanwhile',
        );
      }
      unreachable = true;
      const grant = Math.min(shared.leaseSize, limit - entry.seen);
      entry.left += grant;
      entry.seen += grant;
    }
  }

  function take(key: string, limit: number, expiresAt: number): boolean | Promise<boolean> {
    const entry = entryFor(key, expiresAt);
    if (entry.left > 0) {
      entry.left -= 1;
      return true;
    }
    // Counts only grow within a key's life: once spent, it stays spent without asking anyone.
    if (entry.seen >= limit) return false;
    if (!redis) {
      entry.seen += 1;
      return true;
    }
    entry.lease ??= lease(redis, key, entry, limit).finally(() => {
      entry.lease = undefined;
    });
    return entry.lease.then(() => take(key, limit, expiresAt));
  }

  return {
    take,
    used(key) {
      const entry = entries.get(key);
      return entry === undefined || entry.expiresAt <= clock.now() ? 0 : entry.seen - entry.left;
    },
  };
}
