import { ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import type { Clock } from '../clock.js';
import { UpstreamError } from '../errors.js';

/** Stops calls to an upstream that keeps failing, then lets one probe through after a pause. */
export interface UpstreamBreaker {
  /** Runs `call` through the breaker; the caller checks `openForMs()` first and does not call while open. */
  execute<T>(call: () => Promise<T>): Promise<T>;
  /** Ms until the breaker lets a probe through; 0 when closed or ready to probe. */
  openForMs(): number;
  /** `open` while calls are refused, `half_open` once the next call would be a probe. */
  state(): BreakerState;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * cockatiel counts consecutive failures and runs the closed/open/half-open state machine, but measures
 * the open period with `Date.now()`, which tests cannot move. So cockatiel's own pause is zero (an open
 * breaker turns half-open on the next call) and the pause is kept here on the injected clock: `onBreak`
 * fires on every opening, including a failed half-open probe, and starts a new pause.
 */
export function createUpstreamBreaker({
  clock,
  threshold,
  openMs,
}: {
  clock: Clock;
  threshold: number;
  openMs: number;
}): UpstreamBreaker {
  // A refused configuration proves the upstream is up: it is paced by the failure streak, and does not
  // open the breaker, whose pause would hold a fixed configuration back for `openMs`.
  const outages = handleWhen((error) => !(error instanceof UpstreamError && error.isConfigurationError));
  const policy = circuitBreaker(outages, { halfOpenAfter: 0, breaker: new ConsecutiveBreaker(threshold) });
  let openUntil = 0;
  let broken = false;
  policy.onBreak(() => {
    openUntil = clock.now() + openMs;
    broken = true;
  });
  policy.onReset(() => {
    broken = false;
  });
  const openForMs = () => Math.max(0, openUntil - clock.now());
  return {
    execute: (call) => policy.execute(() => call()),
    openForMs,
    state: () => (openForMs() > 0 ? 'open' : broken ? 'half_open' : 'closed'),
  };
}
