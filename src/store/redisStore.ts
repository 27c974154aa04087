import type { ValueCipher } from './encryption.js';
import type { RedisClient } from './redisConnection.js';
import { fenceKey } from './redisLock.js';
import type { KeyValueStore } from './types.js';

export interface RedisStoreOptions {
  client: RedisClient;
  /** Prepended to every key (`REDIS_KEY_PREFIX`), so several deployments can share one Redis. */
  prefix: string;
  /** Every value is encrypted at rest; the key name is the associated data. */
  cipher: ValueCipher;
}

// Compare-and-delete: the envelope starts with a keyed MAC of the plaintext (see encryption.ts), so an
// equal value is recognised without decrypting, and a newer value written meanwhile is left alone.
const deleteIfScript = `
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[1])) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// Compare-and-set on the fence: a writer whose lease is older than the newest one granted is refused.
const setFencedScript = `
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) < newest then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/**
 * The shared KeyValueStore over Redis: values encrypted with AES-256-GCM, expiry as `PX`. Errors
 * (Redis away) propagate: the callers decide what local state can answer instead.
 */
export function createRedisStore({ client, prefix, cipher }: RedisStoreOptions): KeyValueStore {
  const full = (key: string) => `${prefix}${key}`;
  return {
    async get(key) {
      const envelope = await client.get(full(key));
      return envelope === null ? undefined : cipher.decrypt(envelope, full(key));
    },
    async set(key, value, ttlMs) {
      if (!(ttlMs > 0)) {
        await client.del(full(key));
        return;
      }
      await client.set(full(key), cipher.encrypt(value, full(key)), 'PX', Math.ceil(ttlMs));
    },
    async delete(key) {
      await client.del(full(key));
    },
    async deleteIf(key, value) {
      // The value may have been written under a key a reload has since replaced.
      for (const prefix of [
        cipher.tagPrefix(value, full(key)),
        ...cipher.olderTagPrefixes(value, full(key)),
      ]) {
        if (Number(await client.eval(deleteIfScript, 1, full(key), prefix)) === 1) return true;
      }
      return false;
    },
    async setFenced(key, value, ttlMs, fence) {
      if (!(ttlMs > 0)) return false;
      const envelope = cipher.encrypt(value, full(key));
      const written = await client.eval(
        setFencedScript,
        2,
        full(key),
        fenceKey(prefix, key),
        envelope,
        Math.ceil(ttlMs),
        fence,
      );
      return Number(written) === 1;
    },
    // The connection belongs to whoever created it (it is shared with the lock and the rate limits).
    async close() {},
  };
}
