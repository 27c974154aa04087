import { UpstreamError } from '../errors.js';
import type { FleetLock } from '../store/types.js';
import type { Logger } from '../telemetry/logger.js';
import { inSpan, spanAttributes, spanNames, type Tracer } from '../telemetry/spans.js';

export interface FleetRenewalOptions<T> {
  /** Absent for a single instance: then this is a plain `fetch`. */
  lock: FleetLock | undefined;
  /** The lock's name: the store key of the token, so each cache key renews on its own. */
  name: string;
  /** A usable value another replica has stored meanwhile, if any. */
  reload: () => Promise<T | undefined>;
  /** Asks the upstream and stores the result, fenced by the lease when there is one. */
  fetch: (fence: number | undefined) => Promise<T>;
  /**
   * Whether to renew alone when the lock is unreachable; when false, `LockUnreachable` is thrown instead
   * (the caller holds a token that outlives a short Redis outage, and retries once the lock is back).
   */
  renewWithoutLock?: () => boolean;
  logger: Logger;
  /** How long a replica waits for another's renewal before giving up (a healthy holder is done well before). */
  waitMs: number;
  /** Mean pause between looks at the store while waiting; each pause is jittered by ±50 %. */
  pollMs?: number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** With tracing on: one span per renewal through the lock, saying how it ended and under which fence. */
  tracer?: Tracer | undefined;
}

/**
 * How a renewal through the lock ended: this replica took the lease and asked the upstream
 * (`acquired`), found the token stored by another (`stored_by_other`), renewed without the unreachable
 * lock (`unreachable`), or deferred to a later try (`deferred`).
 */
type LeaseOutcome = 'acquired' | 'stored_by_other' | 'unreachable' | 'deferred';

/** The lock could not be reached and the caller chose to wait for it rather than renew alone. */
export class LockUnreachable extends Error {
  constructor(options: { cause: unknown }) {
    super('renewal lock unreachable; renewal deferred', options);
    this.name = 'LockUnreachable';
  }
}

const realSleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/**
 * Fleet-wide single flight: the replica that takes the lock asks the upstream; the others poll the
 * shared store (jittered, so they do not poll in lockstep) until the token appears, or take the lock
 * themselves once it is free (the holder failed, or died and its lease lapsed). With the lock service
 * unreachable, a replica that still holds a token with time left waits for it (`renewWithoutLock`), so a
 * Redis failover does not turn one renewal into one per replica; one without renews on its own: one
 * request per replica beats no token at all.
 */
export async function renewAcrossFleet<T>(
  options: FleetRenewalOptions<T>,
): Promise<{ value: T; source: 'store' | 'upstream' }> {
  const { lock, tracer } = options;
  if (!lock) return { value: await options.fetch(undefined), source: 'upstream' };
  if (!tracer) return renewUnderLock(lock, options, () => undefined);
  return inSpan(tracer, spanNames.lease, {}, (span) =>
    renewUnderLock(lock, options, (outcome, fence) => {
      span.setAttribute(spanAttributes.leaseOutcome, outcome);
      if (fence !== undefined) span.setAttribute(spanAttributes.fence, fence);
    }),
  );
}

async function renewUnderLock<T>(
  lock: FleetLock,
  options: FleetRenewalOptions<T>,
  report: (outcome: LeaseOutcome, fence?: number) => void,
): Promise<{ value: T; source: 'store' | 'upstream' }> {
  const {
    name,
    reload,
    fetch,
    logger,
    waitMs,
    pollMs = 50,
    random = Math.random,
    sleep = realSleep,
    renewWithoutLock = () => true,
  } = options;
  // Counted in pauses, not read from a clock: bounded even under a clock that tests hold still.
  let waited = 0;
  for (;;) {
    let lease: Awaited<ReturnType<FleetLock['tryAcquire']>>;
    try {
      lease = await lock.tryAcquire(name);
    } catch (error) {
      if (!renewWithoutLock()) {
        report('deferred');
        throw new LockUnreachable({ cause: error });
      }
      logger.debug({ err: error }, 'renewal lock unreachable; renewing without it');
      report('unreachable');
      return { value: await fetch(undefined), source: 'upstream' };
    }
    if (lease) {
      logger.debug({ fence: lease.fence }, 'renewal lease taken: asking the upstream');
      try {
        // Another replica may have renewed between our look at the store and our lease.
        const renewed = await reload();
        if (renewed !== undefined) {
          report('stored_by_other', lease.fence);
          return { value: renewed, source: 'store' };
        }
        report('acquired', lease.fence);
        return { value: await fetch(lease.fence), source: 'upstream' };
      } finally {
        await lease.release();
      }
    }
    if (waited >= waitMs) {
      throw new UpstreamError('timeout', {
        description: `another replica held the renewal lock for more than ${waitMs} ms`,
      });
    }
    const pause = pollMs * (0.5 + random());
    await sleep(pause);
    waited += pause;
    const renewed = await reload();
    if (renewed !== undefined) {
      report('stored_by_other');
      return { value: renewed, source: 'store' };
    }
  }
}
