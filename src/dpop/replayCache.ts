import type { Clock } from '../clock.js';
import type { RedisClient } from '../store/redisConnection.js';
import type { Logger } from '../telemetry/logger.js';

/**
 * `new`: not seen before, now remembered. `replay`: seen within its ttl. `owner_full`: the owner (the
 * proof's key) already has its share of live entries, so this proof is neither accepted nor remembered.
 * `forgotten`: it expires no later than a proof the full cache had to forget, so it may be that one.
 */
export type ReplayCheck = 'new' | 'replay' | 'owner_full' | 'forgotten';

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
   * Most proofs remembered at once. When full, the one with the oldest `iat` is forgotten to make room,
   * and proofs no newer than it are refused from then on, so a forgotten proof is never accepted again.
   * Size it above the proofs a replica accepts within twice the proof window, so that only a flood from
   * many keys reaches it.
   */
  maxEntries?: number;
  /**
   * Most live entries of one owner (one DPoP key): a key that sends more proofs than this within the
   * proof window is refused (`owner_full`) instead of pushing other keys' proofs out.
   */
  maxPerOwner?: number;
  /**
   * How far a proof's `iat` may lie in the past (`DPOP_PROOF_MAX_AGE`), in ms: a remembered proof stays
   * until then, and only proofs dated more than `freshMs` ago are forgotten to make room.
   */
  windowMs?: number;
}

/**
 * Proofs dated within this much of now are never forgotten to make room, so the `iat` below which proofs
 * are refused stays older than any honest client's new proof; the cache can outgrow its cap by them.
 */
const freshMs = 5_000;

interface Entry {
  key: string;
  owner: string;
  expiresAt: number;
}

/**
 * Entries in insertion order. A Map's own iterator would do, but after many deletions at its front V8
 * walks over the deleted slots on every `keys().next()`: a queue with a moving head keeps both the
 * expiry sweep and the eviction O(1) amortised.
 */
function createQueue() {
  let items: Entry[] = [];
  let head = 0;
  return {
    push: (entry: Entry) => items.push(entry),
    peek: (): Entry | undefined => items[head],
    values: () => items.slice(head),
    shift(): void {
      head += 1;
      if (head > 1024 && head * 2 > items.length) {
        items = items.slice(head);
        head = 0;
      }
    },
    clear(): void {
      items = [];
      head = 0;
    },
  };
}

/**
 * A process-local ReplayCache: the default, and each replica's first check when Redis is shared. The
 * check and the write happen in one synchronous step, so concurrent requests cannot both pass. Entries
 * sit in buckets by the second they expire, so whole buckets are dropped as time passes, and when the
 * cache is full the entry forgotten is the one that expires first, which is the one with the oldest `iat`
 * (its ttl runs to the end of its window). A proof that expires no later than a forgotten one is then
 * refused (`forgotten`): had it been seen, it might have been that one, and would be accepted twice.
 * Proofs dated in the last few seconds (`freshMs`) are never forgotten, so the cache outgrows its cap by
 * them rather than refuse an honest new proof. Owners' entries are queued in insertion order, so expired
 * ones are dropped from the front as calls come: no call walks the whole cache.
 */
export function createMemoryReplayCache({
  clock,
  maxEntries = 200_000,
  maxPerOwner = 5_000,
  windowMs = 30_000,
}: MemoryReplayCacheOptions): ReplayCache {
  const entries = new Map<string, Entry>();
  const buckets = new Map<number, ReturnType<typeof createQueue>>();
  const byOwner = new Map<string, { live: number; queue: ReturnType<typeof createQueue> }>();
  // The latest expiry of an entry forgotten while live: a proof expiring no later may have been it.
  let forgottenUntil = Number.NEGATIVE_INFINITY;
  let nextSweepAt = Number.NEGATIVE_INFINITY;

  function forget(entry: Entry): void {
    if (entries.get(entry.key) !== entry) return;
    entries.delete(entry.key);
    const owned = byOwner.get(entry.owner);
    if (!owned) return;
    owned.live -= 1;
    // Its queue holds nothing live: dropped whole, so owners that went quiet cost nothing.
    if (owned.live === 0) byOwner.delete(entry.owner);
  }

  /** Drops the entries at the front of `queue` that are expired or already forgotten. */
  function dropExpired(queue: ReturnType<typeof createQueue>, now: number): void {
    for (let entry = queue.peek(); entry !== undefined; entry = queue.peek()) {
      if (entries.get(entry.key) === entry && entry.expiresAt > now) return;
      forget(entry);
      queue.shift();
    }
  }

  /** Drops the buckets whose second has passed, at most once a second. */
  function sweep(now: number): void {
    if (now < nextSweepAt) return;
    nextSweepAt = now + 1000;
    for (const [second, bucket] of buckets) {
      if (second * 1000 > now) continue;
      for (const entry of bucket.values()) forget(entry);
      buckets.delete(second);
    }
  }

  /**
   * Forgets the live entry that expires first (of those expiring in one second, the first seen), unless
   * it is fresh; false when there was none to forget.
   */
  function evictEarliest(now: number): boolean {
    let earliest = Number.POSITIVE_INFINITY;
    for (const second of buckets.keys()) earliest = Math.min(earliest, second);
    const bucket = buckets.get(earliest);
    // A proof's entry expires about `windowMs` after its `iat` (proof.ts adds a second).
    if (bucket === undefined || earliest * 1000 > now - freshMs + windowMs) return false;
    for (let entry = bucket.peek(); entry !== undefined; entry = bucket.peek()) {
      bucket.shift();
      if (entries.get(entry.key) !== entry) continue;
      forget(entry);
      forgottenUntil = Math.max(forgottenUntil, entry.expiresAt);
      break;
    }
    if (bucket.peek() === undefined) buckets.delete(earliest);
    return true;
  }

  return {
    async checkAndRemember(key, ttlMs, owner = key) {
      const now = clock.now();
      sweep(now);
      const seen = entries.get(key);
      if (seen !== undefined && seen.expiresAt > now) return 'replay';
      if (seen !== undefined) forget(seen);
      const expiresAt = now + Math.max(ttlMs, 1);
      if (expiresAt <= forgottenUntil) return 'forgotten';
      const held = byOwner.get(owner);
      if (held && held.live >= maxPerOwner) {
        dropExpired(held.queue, now);
        if (held.live >= maxPerOwner) return 'owner_full';
      }
      const entry: Entry = { key, owner, expiresAt };
      entries.set(key, entry);
      const second = Math.ceil(expiresAt / 1000);
      const bucket = buckets.get(second) ?? createQueue();
      bucket.push(entry);
      buckets.set(second, bucket);
      let owned = byOwner.get(owner);
      if (!owned) {
        owned = { live: 0, queue: createQueue() };
        byOwner.set(owner, owned);
      }
      // A key in steady use below its share would otherwise keep every expired entry in its queue.
      else dropExpired(owned.queue, now);
      owned.live += 1;
      owned.queue.push(entry);
      while (entries.size > maxEntries && evictEarliest(now)) {}
      // The cache is full of proofs that expire later: this one is the first to go, and is refused.
      if (entries.get(key) !== entry) return 'forgotten';
      return 'new';
    },
    async close() {
      entries.clear();
      buckets.clear();
      byOwner.clear();
    },
  };
}

export interface RedisReplayCacheOptions {
  client: RedisClient;
  /** Prepended to every key, like the store's (`REDIS_KEY_PREFIX`). */
  prefix: string;
  /** This replica's own cache: checked first, and the only one while Redis is away. */
  local: ReplayCache;
  /** What is remembered, in the key after the prefix: DPoP proof ids by default. */
  namespace?: string;
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
  namespace = 'dpop-jti',
}: RedisReplayCacheOptions): ReplayCache {
  return {
    async checkAndRemember(key, ttlMs, owner) {
      const locally = await local.checkAndRemember(key, ttlMs, owner);
      if (locally !== 'new') return locally;
      try {
        const written = await client.set(
          `${prefix}${namespace}:${key}`,
          '1',
          'PX',
          Math.max(Math.ceil(ttlMs), 1),
          'NX',
        );
        return written === 'OK' ? 'new' : 'replay';
      } catch (error) {
        // The connection logs the outage once; this line would repeat for every proof.
        logger.debug({ err: error, namespace }, 'redis unreachable: replay check is local to this replica');
        return 'new';
      }
    },
    async close() {
      await local.close();
    },
  };
}
