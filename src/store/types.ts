/**
 * A small key-value store with expiry: in memory by default, Redis when one is configured (`REDIS_URL`,
 * Sentinel or Cluster), so a fleet of replicas shares tokens and revocations. Values are opaque strings (callers serialise).
 */
export interface KeyValueStore {
  get(key: string): Promise<string | undefined>;
  /** Stores `value` until `ttlMs` from now. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Deletes `key` only while it still holds `value`, atomically (compare and delete), so a newer value
   * written meanwhile by another replica survives. Returns whether it deleted. Shared stores provide it.
   */
  deleteIf?(key: string, value: string): Promise<boolean>;
  /**
   * Stores `value` only if no lease newer than `fence` was granted on `key` by the fleet lock, so a
   * holder whose lease lapsed cannot overwrite a newer holder's value. Returns whether it wrote.
   */
  setFenced?(key: string, value: string, ttlMs: number, fence: number): Promise<boolean>;
  close(): Promise<void>;
}

/** A lease on a fleet-wide lock; `fence` grows with every lease ever granted on the same name. */
export interface LockLease {
  readonly fence: number;
  /** Whether the lease was lost (it lapsed before it could be extended); writes are fenced regardless. */
  lost(): boolean;
  release(): Promise<void>;
}

/** Mutual exclusion across replicas, so a fleet makes one upstream request per renewal. */
export interface FleetLock {
  /** A lease on `name`, or undefined while another replica holds it; throws when the lock is unreachable. */
  tryAcquire(name: string): Promise<LockLease | undefined>;
}
