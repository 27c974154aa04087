import type { Clock } from '../clock.js';
import type { KeyValueStore } from '../store/types.js';

/**
 * Revoked client tokens, by `jti` (RFC 7519 §4.1.7), never by the token itself. Verification reads a
 * local in-memory mirror synchronously, so it never waits on I/O; a revocation is forgotten once the
 * token it names has expired (plus clock tolerance), so memory stays bounded by the tokens still alive.
 *
 * A fleet-wide variant subscribes to a shared channel (Redis pub/sub) and feeds what other replicas
 * revoke into `remember`; `revoke` writes through to the shared store so new replicas can look it up.
 */
export interface RevocationList {
  /** Revokes the token with this `jti` until its `exp` (seconds since the epoch). */
  revoke(jti: string, exp: number): Promise<void>;
  /** Records a revocation learnt from another replica in the local mirror only. */
  remember(jti: string, exp: number): void;
  /** Synchronous: a local lookup. */
  isRevoked(jti: string): boolean;
  /**
   * Calls `listener` with each `jti` newly revoked, here or (through `remember`) anywhere in the fleet,
   * so that what holds a token open (a WebSocket) can drop it at once; answers the unsubscribe.
   */
  onRevoked(listener: (jti: string) => void): () => void;
  /** Revocations still held (after dropping expired ones). */
  size(): number;
  /** Every revocation still held, as `[jti, exp]`: what a replica writes back when the fleet's copy was lost. */
  entries(): [jti: string, exp: number][];
  close(): void;
}

export interface RevocationListOptions {
  /** Where revocations are also written (Redis when configured), so other replicas can share them. */
  store?: KeyValueStore;
  clock: Clock;
  /** How long past `exp` a token is still accepted; defaults to the largest `CLIENT_TOKEN_CLOCK_TOLERANCE`. */
  clockToleranceSeconds?: number;
  /** How often expired entries are dropped when nothing is being revoked. */
  sweepIntervalMs?: number;
}

/** Store key for a revoked jti; jtis are base64url, so they need no escaping. */
export const revocationKey = (jti: string) => `revoked:${jti}`;

interface Entry {
  jti: string;
  /** Milliseconds since the epoch after which the entry may be forgotten. */
  until: number;
}

export function createRevocationList({
  store,
  clock,
  clockToleranceSeconds = 300,
  sweepIntervalMs = 60_000,
}: RevocationListOptions): RevocationList {
  const revoked = new Map<string, number>();
  // A binary min-heap on `until`: a sweep pops only what has expired, O(log n) each.
  const heap: Entry[] = [];

  const push = (entry: Entry) => {
    heap.push(entry);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if ((heap[parent] as Entry).until <= entry.until) break;
      heap[index] = heap[parent] as Entry;
      index = parent;
    }
    heap[index] = entry;
  };

  const pop = () => {
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let index = 0;
    for (;;) {
      const left = index * 2 + 1;
      const right = left + 1;
      let smallest = index;
      const smallestUntil = () => (smallest === index ? last.until : (heap[smallest] as Entry).until);
      if (left < heap.length && (heap[left] as Entry).until < smallestUntil()) smallest = left;
      if (right < heap.length && (heap[right] as Entry).until < smallestUntil()) smallest = right;
      if (smallest === index) break;
      heap[index] = heap[smallest] as Entry;
      index = smallest;
    }
    heap[index] = last;
    return top;
  };

  const sweep = () => {
    const now = clock.now();
    while (heap.length > 0 && (heap[0] as Entry).until <= now) {
      const { jti, until } = pop() as Entry;
      // A jti revoked twice keeps its latest deadline; only the entry holding it removes it.
      if (revoked.get(jti) === until) revoked.delete(jti);
    }
  };

  const listeners = new Set<(jti: string) => void>();

  const remember = (jti: string, exp: number) => {
    const until = exp * 1000 + clockToleranceSeconds * 1000;
    if (!Number.isFinite(until) || until <= clock.now()) return;
    const current = revoked.get(jti);
    if (current !== undefined && current >= until) return;
    revoked.set(jti, until);
    push({ jti, until });
    sweep();
    if (current === undefined) for (const listener of listeners) listener(jti);
  };

  const timer = setInterval(sweep, sweepIntervalMs);
  timer.unref();

  return {
    async revoke(jti, exp) {
      remember(jti, exp);
      const ttlMs = exp * 1000 + clockToleranceSeconds * 1000 - clock.now();
      if (store && Number.isFinite(ttlMs) && ttlMs > 0)
        await store.set(revocationKey(jti), String(exp), ttlMs);
    },
    remember,
    isRevoked(jti) {
      const until = revoked.get(jti);
      return until !== undefined && until > clock.now();
    },
    onRevoked(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    size() {
      sweep();
      return revoked.size;
    },
    entries() {
      sweep();
      return [...revoked].map(([jti, until]) => [jti, until / 1000 - clockToleranceSeconds]);
    },
    close() {
      clearInterval(timer);
    },
  };
}
