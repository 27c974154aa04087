import type { Clock } from '../../clock.js';
import { BrokerError } from '../../errors.js';
import type { CallCounter } from '../../store/callCounter.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { type QuotaStatus, quotaWindow, type TokenQuota } from '../../upstream/quota.js';
import type { BrokerResponse, Handler } from '../dispatch/handler.js';

export interface CallQuotaOptions {
  upstream: string;
  /** `UPSTREAM_[<NAME>_]CALL_QUOTA`, in the grammar of `UPSTREAM_TOKEN_QUOTA`. */
  quota: TokenQuota;
  /** Counts per window; fleet-wide when it leases from Redis. */
  counter: CallCounter;
  clock: Clock;
  metrics: Metrics;
  logger: Logger;
}

/** Redis forgets a window this long after it ended, so replicas whose clocks differ a little agree on it. */
const windowGraceMs = 60_000;

/**
 * Caps the proxied calls to one upstream per fixed UTC window (quota.ts `quotaWindow`, as the token quota
 * and as API plans meter them). Past it, `429 call_quota_exhausted` with `Retry-After` to the window's end.
 * Runs after the client token is verified, so that unauthenticated calls cannot spend the quota.
 */
export function callQuota({ upstream, quota, counter, clock, metrics, logger }: CallQuotaOptions): {
  handler: Handler;
  status(): QuotaStatus;
} {
  // The window and its key are made once per window, not per call.
  let current = { start: 0, end: 0, key: '', expiresAt: 0 };
  let spentLogged = -1;
  const windowAt = (now: number) => {
    if (now >= current.end || now < current.start) {
      const { start, end } = quotaWindow(quota.period, now);
      current = { start, end, key: `${upstream}:${quota.period}:${start}`, expiresAt: end + windowGraceMs };
    }
    return current;
  };

  function refuse(res: BrokerResponse, window: typeof current): BrokerError {
    const now = clock.now();
    const resetsAt = new Date(window.end).toISOString();
    if (spentLogged !== window.start) {
      spentLogged = window.start;
      logger.warn(
        { upstream, limit: quota.limit, period: quota.period, resetsAt },
        'upstream call quota spent: proxied calls are refused until the window resets',
      );
    }
    metrics.recordCallRefusal('call_quota_exhausted', upstream);
    return new BrokerError('call_quota_exhausted', {
      detail: `upstream "${upstream}" has made its ${quota.limit} calls this ${quota.period}; retry after ${resetsAt}`,
      // RFC 9110 §10.2.3: delay-seconds, a whole number; at least one, as the reset may be ms away.
      headers: { 'Retry-After': String(Math.max(1, Math.ceil((window.end - now) / 1000))) },
      logged: {
        ...(res.locals.clientToken && { origin: res.locals.clientToken.origin }),
        upstream,
        reason: `the ${quota.limit}/${quota.period} call quota is spent until ${resetsAt}`,
      },
    });
  }

  const handler: Handler = (_req, res, next) => {
    const window = windowAt(clock.now());
    const taken = counter.take(window.key, quota.limit, window.expiresAt);
    if (taken === true) return next();
    if (taken === false) return next(refuse(res, window));
    return taken.then((allowed) => next(allowed ? undefined : refuse(res, window)));
  };
  return {
    handler,
    status() {
      const window = windowAt(clock.now());
      return {
        limit: quota.limit,
        used: Math.min(counter.used(window.key), quota.limit),
        resetsAt: window.end,
      };
    },
  };
}
