import { BrokerError } from '../../errors.js';
import type { CallCounter } from '../../store/callCounter.js';
import type { Metrics } from '../../telemetry/metrics.js';
import type { BrokerResponse, Handler } from '../dispatch/handler.js';

export interface CallBudgetOptions {
  /** `CLIENT_TOKEN_MAX_CALLS`. */
  maxCalls: number;
  /** Counts by `jti`; fleet-wide when it leases from Redis. */
  counter: CallCounter;
  /** A token is accepted this long past its `exp`, so its count must live as long. */
  clockToleranceSeconds: number;
  metrics: Metrics;
}

/**
 * Caps the proxied calls of one client token, so that each token (and the proof it took to get it) buys
 * a bounded amount of the API. Runs after verifyClientToken, whose claims it reads, and before anything
 * costs the upstream: a refused call reaches neither the token cache nor the API, and its body is not read.
 * Answers without awaiting while the replica holds counted calls of the token (callCounter.ts).
 */
export function callBudget({
  maxCalls,
  counter,
  clockToleranceSeconds,
  metrics,
}: CallBudgetOptions): Handler {
  const refuse = (res: BrokerResponse, origin: string) => {
    const upstream = res.locals.upstream ?? 'none';
    metrics.recordCallRefusal('token_budget_exhausted', upstream);
    return new BrokerError('token_budget_exhausted', {
      detail: `this client token has made its ${maxCalls} calls; get a new client token`,
      logged: { origin, upstream, reason: `the token made its ${maxCalls} calls` },
    });
  };
  return (_req, res, next) => {
    const claims = res.locals.clientToken;
    // Wired after the token check, so this is a wiring mistake: refuse rather than count nothing.
    if (claims === undefined) throw new Error('callBudget runs after verifyClientToken');
    const taken = counter.take(claims.jti, maxCalls, (claims.exp + clockToleranceSeconds) * 1000);
    if (taken === true) return next();
    if (taken === false) return next(refuse(res, claims.origin));
    return taken.then((allowed) => next(allowed ? undefined : refuse(res, claims.origin)));
  };
}
