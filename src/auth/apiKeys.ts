import { createHash, timingSafeEqual } from 'node:crypto';

export interface ApiKeyVerifier {
  /** Whether `presented` is one of the configured keys. Constant time in the key's content. */
  verify(presented: string | undefined): boolean;
  readonly count: number;
  /** Puts a new key list in place (a reloaded `BROKER_API_KEYS_FILE`): an added key works and a removed one is refused from the next call. */
  replace(keys: readonly string[]): void;
}

const hashedKey = /^sha256:([0-9a-f]{64})$/i;

/**
 * Keys for the backend routes (`BROKER_API_KEYS`), given plain or as `sha256:<hex>` so the plain
 * keys need not sit in the environment. Every key is held as its SHA-256 digest: comparing
 * fixed-length digests with `timingSafeEqual` leaks neither content nor length through timing.
 */
export function createApiKeyVerifier(keys: readonly string[]): ApiKeyVerifier {
  let digests = digestsOf(keys);
  return {
    get count() {
      return digests.length;
    },
    replace(next) {
      digests = digestsOf(next);
    },
    verify(presented) {
      if (!presented || presented.length > 1024) return false;
      const candidate = sha256(presented);
      let match = false;
      // Compare against every key, without stopping early, so timing says nothing about which matched.
      for (const digest of digests) match = timingSafeEqual(candidate, digest) || match;
      return match;
    },
  };
}

function digestsOf(keys: readonly string[]): Buffer[] {
  return keys.map((key) => {
    const hashed = hashedKey.exec(key);
    return hashed?.[1] ? Buffer.from(hashed[1].toLowerCase(), 'hex') : sha256(key);
  });
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
