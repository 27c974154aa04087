/**
 * A small key-value store with expiry: in memory by default, Redis when `REDIS_URL` is set, so a fleet
 * of replicas shares tokens and revocations. Values are opaque strings (callers serialise).
 */
export interface KeyValueStore {
  get(key: string): Promise<string | undefined>;
  /** Stores `value` until `ttlMs` from now. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}
