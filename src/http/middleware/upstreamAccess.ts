import { defaultUpstreamName } from '../../config/namedUpstreams.js';
import { BrokerError } from '../../errors.js';
import type { ClientTokenClaims } from '../../signing/clientTokens.js';
import type { Upstream, Upstreams } from '../../upstream/registry.js';
import type { BrokerRequest } from '../dispatch/handler.js';
import { splitTarget } from '../dispatch/routeMatcher.js';
import { tokenAllowListChecks } from './allowList.js';

/**
 * Which upstreams a client token opens: the names in its `upstreams` claim, chosen when it was minted
 * from what its origin may reach. A token minted before names existed opens `default` only.
 */
function openedUpstreams(claims: Pick<ClientTokenClaims, 'upstreams'>): readonly string[] {
  return claims.upstreams ?? [defaultUpstreamName];
}

/**
 * The `upstreams` a caller asked for (`?upstreams=a,b`, a repeated parameter, or a JSON array), or
 * undefined when it asked for none. A name that is not configured is a 400: the request is wrong.
 */
export function requestedUpstreams(value: unknown, upstreams: Upstreams): string[] | undefined {
  if (value === undefined) return undefined;
  const items = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(items) || !items.every((item) => typeof item === 'string')) {
    throw new BrokerError('invalid_request', { detail: 'upstreams must be a comma-separated list of names' });
  }
  const names = [...new Set(items.flatMap((item) => item.split(',')).map((name) => name.trim()))].filter(
    Boolean,
  );
  const known = upstreams.list.map((upstream) => upstream.name);
  if (names.length === 0) {
    throw new BrokerError('invalid_request', { detail: `upstreams must name some of: ${known.join(', ')}` });
  }
  const unknown = names.find((name) => upstreams.get(name) === undefined);
  if (unknown !== undefined) {
    throw new BrokerError('invalid_request', {
      detail: `upstreams: "${unknown.slice(0, 64)}" is not configured; known: ${known.join(', ')}`,
    });
  }
  return names;
}

/**
 * The names a new client token opens: every upstream the origin may reach, or the requested ones when
 * all of them are reachable. Asking for one the origin may not reach is refused (403), not dropped, so
 * a page never holds a token that fails later at the proxy.
 */
export function grantedUpstreams(
  upstreams: Upstreams,
  origin: string,
  requested: string[] | undefined,
): string[] {
  const reachable = upstreams.reachableFrom(origin);
  const refused = requested?.find((name) => !reachable.includes(name));
  if (refused !== undefined) {
    throw new BrokerError('upstream_not_allowed', {
      detail: `${origin} may not reach upstream "${refused}" (see its UPSTREAM_<NAME>_ALLOWED_ORIGINS)`,
    });
  }
  if (reachable.length === 0) {
    throw new BrokerError('upstream_not_allowed', {
      detail: `${origin} may reach no upstream (see UPSTREAM_<NAME>_ALLOWED_ORIGINS)`,
    });
  }
  return requested ?? reachable;
}

/**
 * The check verifyClientToken runs for a proxy mount: the token must open this upstream, and its origin
 * must still be admitted by the upstream's own origins (so a narrowing applies to tokens minted before it,
 * too). A token with an `allow` claim may only make the calls its rules open, on top of the upstream's.
 */
export function upstreamAdmission(
  upstream: Upstream,
): (claims: ClientTokenClaims, req: BrokerRequest) => void {
  const tokenAllowList = tokenAllowListChecks();
  return (claims, req) => {
    if (!openedUpstreams(claims).includes(upstream.name)) {
      throw new BrokerError('upstream_not_allowed', {
        detail: `this client token does not open upstream "${upstream.name}"; get one that does (upstreams=${upstream.name})`,
      });
    }
    if (upstream.origins && !upstream.origins.isAllowed(claims.origin)) {
      throw new BrokerError('upstream_not_allowed', {
        detail: `${claims.origin} may not reach upstream "${upstream.name}"`,
      });
    }
    if (claims.allow !== undefined)
      tokenAllowList(claims)(req.method ?? 'GET', splitTarget(req.url ?? '/').path);
  };
}
