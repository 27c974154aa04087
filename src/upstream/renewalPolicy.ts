import type { UpstreamToken } from './types.js';

/** When to renew a token and how long to wait after a failure. Every value has a default below. */
export interface RenewalPolicy {
  /** Renew at least this long before expiry. */
  minMarginMs: number;
  /** ...or this share of the token's lifetime, whichever is longer (capped at half the lifetime). */
  marginRatio: number;
  /** Up to this share of the margin is taken off at random, so replicas do not renew in lockstep. */
  jitterRatio: number;
  /** First retry delay ceiling; doubles per consecutive failure. */
  backoffBaseMs: number;
  /** Highest retry delay ceiling. */
  backoffCapMs: number;
  /** Highest upstream `Retry-After` honoured, so a bogus header cannot park the broker for days. */
  maxRetryAfterMs: number;
  /** Consecutive failures that open the circuit breaker. */
  breakerThreshold: number;
  /**
   * How long an open breaker refuses calls before one probe is let through, while a held token is served
   * (without one, the upstream is down and probed every `rejectedProbeMs`).
   */
  breakerOpenMs: number;
  /** A refused configuration (`invalid_client`...) is logged at error level at most once per interval. */
  rejectedLogIntervalMs: number;
  /**
   * While the upstream refuses our configuration, or no token is held and `breakerThreshold` attempts in
   * a row failed, it is asked again after this long plus up to half as much jitter: rarely enough not to
   * hammer it, soon enough that a fix or a recovery is picked up within seconds.
   */
  rejectedProbeMs: number;
}

export const defaultRenewalPolicy: RenewalPolicy = {
  minMarginMs: 60_000,
  marginRatio: 0.1,
  jitterRatio: 0.1,
  backoffBaseMs: 500,
  backoffCapMs: 30_000,
  maxRetryAfterMs: 300_000,
  breakerThreshold: 5,
  breakerOpenMs: 30_000,
  rejectedLogIntervalMs: 60_000,
  rejectedProbeMs: 2_000,
};

/** How long before expiry a token of this lifetime is renewed, before jitter. */
export function renewalMargin(lifetimeMs: number, policy: RenewalPolicy): number {
  if (!(lifetimeMs > 0)) return 0;
  // A token living two minutes would otherwise be renewed the moment it arrives.
  return Math.min(Math.max(policy.minMarginMs, lifetimeMs * policy.marginRatio), lifetimeMs / 2);
}

/** The instant (ms since epoch) from which this token should be renewed in the background. */
export function renewalTime(token: UpstreamToken, policy: RenewalPolicy, random: () => number): number {
  const margin = renewalMargin(token.expiresAt - token.obtainedAt, policy);
  return token.expiresAt - margin + random() * policy.jitterRatio * margin;
}

/** Whether the token is not yet due for renewal at `now`, whichever jitter a replica drew. */
export function isFresh(token: UpstreamToken, now: number, policy: RenewalPolicy): boolean {
  return now < token.expiresAt - renewalMargin(token.expiresAt - token.obtainedAt, policy);
}

/**
 * Delay before the next attempt while the upstream is down: a fixed pace, not a growing backoff, since
 * the fix (a corrected secret, a restarted authorization server) can come at any moment.
 * Never shorter than the upstream's `Retry-After`.
 */
export function rejectedProbeDelay(
  retryAfterSeconds: number | undefined,
  policy: RenewalPolicy,
  random: () => number,
): number {
  const retryAfterMs = Math.min((retryAfterSeconds ?? 0) * 1000, policy.maxRetryAfterMs);
  return Math.max(policy.rejectedProbeMs + Math.floor((random() * policy.rejectedProbeMs) / 2), retryAfterMs);
}

/**
 * Delay before the next attempt after `failures` consecutive failures: capped exponential backoff with
 * full jitter, never shorter than the upstream's `Retry-After` (RFC 9110 §10.2.3, in seconds).
 * @see https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3
 */
export function retryDelay(
  failures: number,
  retryAfterSeconds: number | undefined,
  policy: RenewalPolicy,
  random: () => number,
): number {
  const ceiling = Math.min(policy.backoffCapMs, policy.backoffBaseMs * 2 ** Math.max(0, failures - 1));
  const jittered = Math.floor(random() * ceiling);
  const retryAfterMs = Math.min((retryAfterSeconds ?? 0) * 1000, policy.maxRetryAfterMs);
  return Math.max(jittered, retryAfterMs);
}
