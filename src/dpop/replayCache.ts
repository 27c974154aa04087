import type { Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';

/**
 * `new`: not seen before, now remembered. `replay`: seen within its ttl. `owner_full`: the owner (the
 * proof's key) already has its share of live entries, so this proof is neither accepted nor remembered.
 */
export type ReplayCheck = 'new' | 'replay' | 'owner_full';

/**
 * Remembers the DPoP proofs already seen, so each is accepted once (RFC 9449 §11.1). A proof is only
 * acceptable while its `iat` is inside the verifier's window, so it need only be remembered until then.
 */
export interface ReplayCache {
  /**
   * Whether `key` is new, and if so remembers it for `ttlMs` under `owner` (the proof's key thumbprint).
   * Atomic: of two concurrent calls with one key, one gets `new`.
   */
  checkAndRemember(key: string, ttlMs: number, owner?: string): Promise<ReplayCheck>;
  close(): Promise<void>;
}

export interface MemoryReplayCacheOptions {
  clock: Clock;
  /**
   * Most proofs remembered at once. When full, the oldest entry is forgotten to make room: an honest new
   * proof is never refused because others filled the cache. Size it above the proofs a replica accepts
   * within twice the proof window, so that only a flood from many keys reaches it.
   */
  maxEntries?: number;
  /**
   * Most live entries of one owner (one DPoP key): a key that sends more proofs than this within the
   * proof window is refused (`owner_full`) instead of pushing other keys' proofs out.
   */
  maxPerOwner?: number;
}

interface Entry {
  owner: string;
  expiresAt: number;
}

/**
 * A process-local ReplayCache: the default, and each replica's first check when Redis is shared. The
 * check and the write happen in one synchronous step, so concurrent requests cannot both pass. Entries are
 * kept in insertion order, globally and per owner, so expired ones are dropped from the front as calls
 * come, and the oldest is the one forgotten when the cache is full: no call walks the whole cache.
 */
export function createMemoryReplayCache({
  clock,
  maxEntries = 200_000,
  maxPerOwner = 5_000,
}: MemoryReplayCacheOptions): ReplayCache {
  const entries = new Map<string, Entry>();
  const byOwner = new Map<string, Set<string>>();

  function forget(key: string): void {
    const entry = entries.get(key);
    if (!entry) return;
    entries.delete(key);
    const owned = byOwner.get(entry.owner);
    owned?.delete(key);
    if (owned?.size === 0) byOwner.delete(entry.owner);
  }

  /** Drops expired entries from the front of `keys`, stopping at the first live one. */
  function dropExpired(keys: Iterable<string>, now: number): void {
    for (const key of keys) {
      if ((entries.get(key)?.expiresAt ?? 0) > now) return;
      forget(key);
    }
  }

  return {
    async checkAndRemember(key, ttlMs, owner = key) {
      const now = clock.now();
      dropExpired(entries.keys(), now);
      const seen = entries.get(key);
      if (seen !== undefined && seen.expiresAt > now) return 'replay';
      forget(key);
      const owned = byOwner.get(owner);
      if (owned && owned.size >= maxPerOwner) {
        dropExpired(owned, now);
        if (owned.size >= maxPerOwner) return 'owner_full';
      }
      if (entries.size >= maxEntries) {
        const oldest = entries.keys().next();
        if (!oldest.done) forget(oldest.value);
      }
      entries.set(key, { owner, expiresAt: now + Math.max(ttlMs, 1) });
      if (owned && byOwner.has(owner)) owned.add(key);
      else byOwner.set(owner, new Set([key]));
      return 'new';
    },
    async close() {
      entries.clear();
      byOwner.clear();
    },
  };
}

export interface RedisReplayCacheOptions {
  client: Redis;
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
    async checkAndRemember(key, ttlMs, owner) {
      const locally = await local.checkAndRemember(key, ttlMs, owner);
      if (locally !== 'new') return locally;
      try {
        const written = await client.set(
          `${prefix}dpop-jti:${key}`,
          '1',
          'PX',
          Math.max(Math.ceil(ttlMs), 1),
          'NX',
        );
        return written === 'OK' ? 'new' : 'replay';
      } catch (error) {
        // The connection logs the outage once; this line would repeat for every proof.
        logger.debug({ err: error }, 'redis unreachable: DPoP replay check is local to this replica');
        return 'new';
      }
    },
    async close() {
      await local.close();
    },
  };
}
