import type { Clock } from '../clock.js';
import type { KeyValueStore } from './types.js';

export interface MemoryStoreOptions {
  clock: Clock;
  /**
   * Most entries held at once. When the store is full of live entries the oldest written one is
   * evicted, so size it above the expected number of live keys (revocations included).
   */
  maxEntries?: number;
}

interface Entry {
  value: string;
  expiresAt: number;
}

/**
 * A process-local KeyValueStore: the default when no Redis is configured. Expiry follows the injected
 * clock; an expired entry is dropped when read, and expired entries are swept when the store fills up,
 * so memory stays bounded without a background timer.
 */
export function createMemoryStore({ clock, maxEntries = 100_000 }: MemoryStoreOptions): KeyValueStore {
  // A Map iterates in insertion order; `set` re-inserts, so the first entry is the oldest written.
  const entries = new Map<string, Entry>();
  // No entry expires before this instant, so a sweep before it would free nothing.
  let nextExpiryAt = Number.POSITIVE_INFINITY;

  function sweep(now: number): void {
    nextExpiryAt = Number.POSITIVE_INFINITY;
    for (const [key, entry] of entries) {
      if (entry.expiresAt <= now) entries.delete(key);
      else nextExpiryAt = Math.min(nextExpiryAt, entry.expiresAt);
    }
  }

  function makeRoom(now: number): void {
    if (entries.size < maxEntries) return;
    if (now >= nextExpiryAt) sweep(now);
    while (entries.size >= maxEntries) {
      const oldest = entries.keys().next();
      if (oldest.done) return;
      entries.delete(oldest.value);
    }
  }

  return {
    async get(key) {
      const entry = entries.get(key);
      if (!entry) return undefined;
      if (entry.expiresAt <= clock.now()) {
        entries.delete(key);
        return undefined;
      }
      return entry.value;
    },
    async set(key, value, ttlMs) {
      entries.delete(key);
      if (!(ttlMs > 0)) return;
      const now = clock.now();
      makeRoom(now);
      const expiresAt = now + ttlMs;
      entries.set(key, { value, expiresAt });
      nextExpiryAt = Math.min(nextExpiryAt, expiresAt);
    },
    async delete(key) {
      entries.delete(key);
    },
    async close() {
      entries.clear();
      nextExpiryAt = Number.POSITIVE_INFINITY;
    },
  };
}
