import { upstreamPrefix } from '../../config/upstreamNames.js';
import { BrokerError } from '../../errors.js';
import type { AllowList } from '../../proxy/allowList.js';
import { checkedPath } from '../../proxy/targetUrl.js';
import type { Upstream } from '../../upstream/registry.js';
import type { Handler } from '../dispatch/handler.js';
import { splitTarget } from '../dispatch/requestTarget.js';

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
    const shown = path === '' ? '/' : path.length > 200 ? `${path.slice(0, 200)}...` : path;
    throw new BrokerError('path_not_allowed', {
      detail: `${method} ${shown} is not allowed on this upstream (${setting})`,
    });
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
