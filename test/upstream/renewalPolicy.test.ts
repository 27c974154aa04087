import { describe, expect, it } from 'vitest';
import {
  defaultRenewalPolicy as policy,
  renewalMargin,
  renewalTime,
  retryDelay,
} from '../../src/upstream/renewalPolicy.js';

const minute = 60_000;

describe('renewal policy', () => {
  it('when a token lives an hour, then it is renewed 10 % of its lifetime before expiry', () => {
    expect(renewalMargin(60 * minute, policy)).toBe(6 * minute);
  });

  it('when a token lives five minutes, then the 60 s floor applies; when it lives one minute, half its lifetime', () => {
    expect(renewalMargin(5 * minute, policy)).toBe(minute);
    expect(renewalMargin(minute, policy)).toBe(30_000);
    expect(renewalMargin(0, policy)).toBe(0);
  });

  it('when jitter is drawn, then the renewal moves later by at most 10 % of the margin', () => {
    const token = { accessToken: 'x', tokenType: 'Bearer', obtainedAt: 0, expiresAt: 60 * minute };
    expect(renewalTime(token, policy, () => 0)).toBe(54 * minute);
    expect(renewalTime(token, policy, () => 0.999)).toBeCloseTo(54 * minute + 0.0999 * 6 * minute, 0);
  });

  it('when failures accumulate, then the delay ceiling doubles from 500 ms up to the 30 s cap (full jitter)', () => {
    const top = () => 0.999_999;
    expect(retryDelay(1, undefined, policy, top)).toBe(499);
    expect(retryDelay(2, undefined, policy, top)).toBe(999);
    expect(retryDelay(20, undefined, policy, top)).toBe(29_999);
    expect(retryDelay(20, undefined, policy, () => 0)).toBe(0);
  });

  it('when the upstream sent Retry-After, then the delay is at least that long, within the sanity cap', () => {
    expect(retryDelay(1, 120, policy, () => 0.5)).toBe(120_000);
    expect(retryDelay(1, 86_400, policy, () => 0.5)).toBe(policy.maxRetryAfterMs);
  });
});
