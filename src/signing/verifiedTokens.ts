import type { Clock } from '../clock.js';

/**
 * Tokens whose signature and claims were already verified, keyed by the exact token string, each until
 * a deadline (its `exp` plus clock tolerance). Verifying an Ed25519 or ECDSA signature and parsing the
 * claims again on every proxied call of the same token is most of the proxy's own CPU time; the
 * checks that depend on the moment or the request (lifetime, revocation, origin, IP, DPoP) are not cached
 * here and run on every call. Bounded: when full, the entry verified first goes first (not always the
 * first to expire: a token may be verified long after it was minted), so memory never grows with the
 * traffic.
 */
export interface VerifiedTokens<T> {
  /** The value stored for this exact token, unless its deadline has passed (then it is dropped). */
  get(token: string): T | undefined;
  /** Remembers `value` for `token` until `until` (milliseconds since the epoch). */
  set(token: string, value: T, until: number): void;
  size(): number;
}

export interface VerifiedTokensOptions {
  clock: Clock;
  /** Most entries held at once. */
  maxEntries: number;
}

export function createVerifiedTokens<T>({ clock, maxEntries }: VerifiedTokensOptions): VerifiedTokens<T> {
  if (!Number.isInteger(maxEntries) || maxEntries < 0)
    throw new TypeError('maxEntries must be an integer >= 0');
  const entries = new Map<string, { value: T; until: number }>();
  return {
    get(token) {
      const entry = entries.get(token);
      if (entry === undefined) return undefined;
      if (entry.until <= clock.now()) {
        entries.delete(token);
        return undefined;
      }
      return entry.value;
    },
    set(token, value, until) {
      if (maxEntries === 0 || until <= clock.now()) return;
      entries.delete(token);
      while (entries.size >= maxEntries) {
        const oldest = entries.keys().next();
        if (oldest.done) break;
        entries.delete(oldest.value);
      }
      entries.set(token, { value, until });
    },
    size: () => entries.size,
  };
}
