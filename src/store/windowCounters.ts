import type { ClientRateLimitInfo, Store } from 'express-rate-limit';
import type { Clock } from '../clock.js';

export interface WindowCountersOptions {
  clock: Clock;
  windowMs: number;
  /**
   * Most keys counted at once. A new key past it evicts the key whose window started first, so memory
   * stays bounded however many addresses a client can spend (an IPv6 `/56` each, or spoofed
   * `X-Forwarded-For` behind a trusting proxy).
   */
  maxKeys: number;
}

interface Count {
  hits: number;
  resetAt: number;
}

/**
 * Fixed-window hit counters in process memory, one window per key from its first hit, with a cap on
 * keys and no timer: an express-rate-limit `Store` for the per-IP limits when no Redis is configured.
 * express-rate-limit's own MemoryStore keeps every key until its window passes, without bound.
 */
/** An express-rate-limit `Store` whose answers are synchronous. */
export type WindowCounters = Omit<Store, 'get' | 'increment'> & {
  get(key: string): ClientRateLimitInfo | undefined;
  increment(key: string): ClientRateLimitInfo;
};

export function createWindowCounters({ clock, windowMs, maxKeys }: WindowCountersOptions): WindowCounters {
  // A Map iterates in insertion order and a new window re-inserts its key: the first key is the oldest window.
  const counts = new Map<string, Count>();
  const info = (count: Count): ClientRateLimitInfo => ({
    totalHits: count.hits,
    resetTime: new Date(count.resetAt),
  });
  const live = (key: string, now: number) => {
    const count = counts.get(key);
    return count !== undefined && count.resetAt > now ? count : undefined;
  };
  return {
    localKeys: true,
    get(key) {
      const count = live(key, clock.now());
      return count && info(count);
    },
    increment(key) {
      const now = clock.now();
      let count = live(key, now);
      if (count === undefined) {
        counts.delete(key);
        // Every window is as long, so the ones that have passed are at the front; then the cap.
        for (const [oldest, { resetAt }] of counts) {
          if (resetAt > now && counts.size < maxKeys) break;
          counts.delete(oldest);
        }
        count = { hits: 0, resetAt: now + windowMs };
        counts.set(key, count);
      }
      count.hits += 1;
      return info(count);
    },
    decrement(key) {
      const count = live(key, clock.now());
      if (count && count.hits > 0) count.hits -= 1;
    },
    resetKey(key) {
      counts.delete(key);
    },
    resetAll() {
      counts.clear();
    },
  };
}
