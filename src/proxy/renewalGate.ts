import type { Clock } from '../clock.js';

/**
 * Decides whether a 401 from the API may drop the upstream token it refused (RFC 6750 §3.1
 * `invalid_token`). Every request that saw the same token refused may drop it (the cache compares and
 * swaps, so only one renewal follows). But once a token was dropped, a 401 to a *different* token within
 * the cool-down says the API refuses tokens, not that one: renewing again would turn every proxied
 * request into a token request (a 401 storm hammering the authorization server).
 */
export interface RenewalGate {
  /** True when `accessToken` may be invalidated now, which is then remembered; false during the cool-down. */
  mayInvalidate(accessToken: string): boolean;
}

export function createRenewalGate({ clock, cooldownMs }: { clock: Clock; cooldownMs: number }): RenewalGate {
  let last: { accessToken: string; at: number } | undefined;
  return {
    mayInvalidate(accessToken) {
      if (last?.accessToken === accessToken) return true;
      const now = clock.now();
      if (last && now - last.at < cooldownMs) return false;
      last = { accessToken, at: now };
      return true;
    },
  };
}
