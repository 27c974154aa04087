import type { Clock } from '../clock.js';
import type { RedisClient } from '../store/redisConnection.js';
import type { Logger } from '../telemetry/logger.js';

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
 * check and the write happen in one synchronous step, so concurrent requests cannot both pass. Entries are
 * queued in insertion order, globally and per owner, so expired ones are dropped from the front as calls
 * come, and the oldest is the one forgotten when the cache is full: no call walks the whole cache.
 */
export function createMemoryReplayCache({
  clock,
  maxEntries = 200_000,
  maxPerOwner = 5_000,
}: MemoryReplayCacheOptions): ReplayCache {
  const entries = new Map<string, Entry>();
  const order = createQueue();
  const byOwner = new Map<string, { live: number; queue: ReturnType<typeof createQueue> }>();

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

  return {
    async checkAndRemember(key, ttlMs, owner = key) {
      const now = clock.now();
      dropExpired(order, now);
      const seen = entries.get(key);
      if (seen !== undefined && seen.expiresAt > now) return 'replay';
      if (seen !== undefined) forget(seen);
      const held = byOwner.get(owner);
      if (held && held.live >= maxPerOwner) {
        dropExpired(held.queue, now);
        if (held.live >= maxPerOwner) return 'owner_full';
      }
      if (entries.size >= maxEntries) {
        for (
          let oldest = order.peek();
          oldest !== undefined && entries.size >= maxEntries;
          oldest = order.peek()
        ) {
          forget(oldest);
          order.shift();
        }
      }
      const entry: Entry = { key, owner, expiresAt: now + Math.max(ttlMs, 1) };
      entries.set(key, entry);
      order.push(entry);
      let owned = byOwner.get(owner);
      if (!owned) {
        owned = { live: 0, queue: createQueue() };
        byOwner.set(owner, owned);
      }
      // A key in steady use below its share would otherwise keep every expired entry in its queue.
      else dropExpired(owned.queue, now);
      owned.live += 1;
      owned.queue.push(entry);
      return 'new';
    },
    async close() {
      entries.clear();
      order.clear();
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
