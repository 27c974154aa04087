import { upstreamPrefix } from '../../config/upstreamNames.js';
import { BrokerError } from '../../errors.js';
import { type AllowList, compileAllowList } from '../../proxy/allowList.js';
import { type AllowRule, parseAllowRules } from '../../proxy/allowRules.js';
import { checkedPath } from '../../proxy/targetUrl.js';
import type { ClientTokenClaims } from '../../signing/clientTokens.js';
import type { Upstream } from '../../upstream/registry.js';
import type { Handler } from '../dispatch/handler.js';
import { splitTarget } from '../dispatch/routeMatcher.js';

/** Refuses a call that no rule of `UPSTREAM_[<NAME>_]ALLOW` opens; anything else passes. */
export type AllowListCheck = (method: string, target: string) => void;

/**
 * The allow-list of one upstream as a check of a method and a raw target under its mount (`/plants/1?x=1`),
 * for every way in: a proxied call, and a WebSocket handshake (method `GET`). The path is checked as the
 * forwarder checks it (targetUrl.ts), so what passes here is what would be sent.
 *
 * @throws BrokerError `invalid_request` (a path the forwarder would refuse) or `path_not_allowed`
 */
export function allowListCheck(allow: AllowList, setting: string): AllowListCheck {
  return (method, target) => {
    const { path } = checkedPath(target);
    if (allow(method, path)) return;
    throw new BrokerError('path_not_allowed', {
      detail: `${method} ${shown(path)} is not allowed on this upstream (${setting})`,
    });
  };
}

const shown = (path: string) => (path === '' ? '/' : path.length > 200 ? `${path.slice(0, 200)}...` : path);

/**
 * The check of a client token's `allow` claim, which narrows the upstream's rules (both must open a call).
 * Each token's rules are compiled once: the verified-token cache hands out the same frozen claims object
 * for every call with the token. A claim that does not parse opens nothing (a token we signed always holds
 * rules that do).
 */
export function tokenAllowListChecks(): (claims: ClientTokenClaims) => AllowListCheck {
  const compiled = new WeakMap<ClientTokenClaims, AllowList>();
  return (claims) => {
    let opens = compiled.get(claims);
    if (opens === undefined) {
      const rules = parseAllowRules(claims.allow ?? '');
      opens = typeof rules === 'string' ? () => false : compileAllowList(rules as AllowRule[]);
      compiled.set(claims, opens);
    }
    const allow = opens;
    return (method, target) => {
      const { path } = checkedPath(target);
      if (allow(method, path)) return;
      throw new BrokerError('path_not_allowed', {
        detail: `${method} ${shown(path)} is not allowed by this client token (its allow claim)`,
      });
    };
  };
}

/**
 * The proxy step: after the client token was verified, before the forwarder fetches an upstream token or
 * reads the body. `req.url` is the raw remainder under the mount, as in both lanes.
 */
export function allowListHandler(check: AllowListCheck): Handler {
  return (req, _res, next) => {
    check(req.method ?? 'GET', splitTarget(req.url ?? '/').path);
    next();
  };
}

/** The check of an upstream's `ALLOW` rules, or undefined when it has none (then nothing is checked). */
export function upstreamAllowListCheck(upstream: Upstream, named: boolean): AllowListCheck | undefined {
  if (!upstream.allow) return undefined;
  return allowListCheck(upstream.allow, named ? `${upstreamPrefix(upstream.name)}ALLOW` : 'UPSTREAM_ALLOW');
}
