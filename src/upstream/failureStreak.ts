import type { Clock } from '../clock.js';
import { BrokerError, UpstreamError } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { UpstreamBreaker } from './circuitBreaker.js';
import { type RenewalPolicy, rejectedProbeDelay, retryDelay } from './renewalPolicy.js';
import type { TokenCacheStatus } from './types.js';

/**
 * Consecutive upstream failures: when the next attempt may go out, what callers without a token are
 * told meanwhile, and what gets logged (a warning once per streak, a refused configuration at error
 * level once per interval), so a dead upstream neither gets hammered nor floods the log.
 */
export interface FailureStreak {
  /** Records a failure; returns the error for the callers that waited on the attempt. */
  record(error: unknown, servingUntil: number | undefined): BrokerError;
  /** Ends the streak after a success. */
  reset(): void;
  /** No upstream call before this instant (backoff, `Retry-After`, open breaker); 0 when none is pending. */
  retryAt(): number;
  /** What a caller without a token is told while the next attempt is not yet due. */
  refusal(): BrokerError;
  lastError(): TokenCacheStatus['lastError'];
}

export function createFailureStreak({
  clock,
  logger,
  policy,
  random,
  breaker,
}: {
  clock: Clock;
  logger: Logger;
  policy: RenewalPolicy;
  random: () => number;
  breaker: UpstreamBreaker;
}): FailureStreak {
  let failures = 0;
  let retryAt = 0;
  let rejected = false;
  let cause: unknown;
  let lastError: TokenCacheStatus['lastError'];
  const warned = new Set<'serving' | 'unavailable'>();
  // Kept across streaks: "once per interval" must hold even when a success comes in between.
  let lastRejectedLogAt = Number.NEGATIVE_INFINITY;

  function refusal(waitMs: number): BrokerError {
    if (rejected) {
      // The OAuth error code tells the operator what to fix; the upstream's own description stays in the log.
      // Only a well-formed code (RFC 6749 §5.2: printable ASCII, no quote or backslash) reaches the client.
      const code = cause instanceof UpstreamError ? cause.error : undefined;
      const error =
        code !== undefined && /^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(code) ? ` (${code})` : '';
      return new BrokerError('upstream_rejected', {
        detail: `the upstream authorization server refused the broker's client credentials or configuration${error}; an operator must fix the UPSTREAM_* settings`,
        cause,
      });
    }
    // RFC 9110 §10.2.3: delay-seconds, a whole number.
    const retryAfter = String(Math.max(1, Math.ceil(waitMs / 1000)));
    return new BrokerError('upstream_unavailable', { headers: { 'Retry-After': retryAfter }, cause });
  }

  function log(fields: Record<string, unknown>, now: number, serving: boolean): void {
    if (rejected) {
      if (now - lastRejectedLogAt < policy.rejectedLogIntervalMs) {
        logger.debug(fields, 'upstream still refuses our configuration');
        return;
      }
      lastRejectedLogAt = now;
      logger.error(
        fields,
        'the upstream refused our client credentials or configuration; an operator must fix it',
      );
      return;
    }
    const mode = serving ? 'serving' : 'unavailable';
    if (warned.has(mode)) {
      logger.debug(fields, 'upstream token request failed again');
      return;
    }
    warned.add(mode);
    logger.warn(
      fields,
      serving
        ? 'upstream token renewal failing; serving the current token until it expires'
        : 'no upstream token can be obtained; callers get upstream_unavailable',
    );
  }

  return {
    record(error, servingUntil) {
      const now = clock.now();
      const upstream = error instanceof UpstreamError ? error : undefined;
      failures += 1;
      rejected = upstream?.isConfigurationError ?? false;
      cause = error;
      // Callers without a token wait on the next attempt: once as many failures as open the breaker came
      // in a row, the upstream is probed at the refused configuration's steady pace, whatever the failure,
      // rather than after a growing backoff and the breaker's pause, so a healed upstream serves a token
      // within seconds. With a token held, nobody waits: the backoff and the breaker spare the upstream.
      const steady = servingUntil === undefined && failures >= policy.breakerThreshold;
      // Read after the failed call: cockatiel has already opened the breaker if this failure tripped it.
      const delay =
        rejected || steady
          ? Math.max(
              rejectedProbeDelay(upstream?.retryAfter, policy, random),
              rejected ? breaker.openForMs() : 0,
            )
          : Math.max(retryDelay(failures, upstream?.retryAfter, policy, random), breaker.openForMs());
      retryAt = now + delay;
      lastError = { error: upstream?.error ?? 'unexpected', at: now };
      const fields = {
        error: lastError.error,
        httpStatus: upstream?.httpStatus,
        description: upstream?.description,
        failures,
        retryInMs: delay,
        ...(servingUntil === undefined ? {} : { expiresAt: new Date(servingUntil).toISOString() }),
        // An UpstreamError is described by the fields above; anything else is a bug worth its stack.
        ...(upstream ? {} : { err: error }),
      };
      log(fields, now, servingUntil !== undefined);
      return refusal(delay);
    },
    reset() {
      if (failures > 0) logger.info({ failures }, 'upstream token renewal recovered');
      failures = 0;
      retryAt = 0;
      rejected = false;
      cause = undefined;
      lastError = undefined;
      warned.clear();
    },
    retryAt: () => retryAt,
    refusal: () => refusal(retryAt - clock.now()),
    lastError: () => lastError,
  };
}
