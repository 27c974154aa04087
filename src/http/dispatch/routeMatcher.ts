import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import parseurl from 'parseurl';
import type { Handler } from './handler.js';

/** Every route's name, as `res.locals.route` carries it to the metrics and the access log. */
export type RouteName =
  | 'clientToken'
  | 'attestationChallenge'
  | 'claim'
  | 'upstreamToken'
  | 'introspect'
  | 'revoke'
  | 'proxy'
  | 'healthz'
  | 'readyz'
  | 'metrics'
  | 'openapi'
  | 'jwks'
  | 'static';

interface RouteBase {
  name: RouteName;
  /** As Express's `app.get`/`app.post` take them (`GET` also answers `HEAD`); `all`: the chain refuses the rest. */
  methods: 'all' | readonly ('GET' | 'POST')[];
  /** In lower case. Matched in any letter case, with one trailing slash or none, in origin or absolute form. */
  path: string;
  /** `exact`: the path alone; `mount`: the path and every path under it, the chain seeing `req.url` relative to it. */
  match: 'exact' | 'mount';
}

/** A hot route: the direct lane serves its plain spellings from `node:http`, Express the others. */
export interface DirectRoute extends RouteBase {
  lane: 'direct';
  /** Written against `node:http` alone (handler.ts), so that both lanes can run it. */
  chain: Handler[];
}

/** A route only Express serves. */
export interface ExpressRoute extends RouteBase {
  lane: 'express';
  /** Runs the JSON and form body parsers for any method at the path and under it, ahead of the chain. */
  parsesBody?: boolean;
  chain: RequestHandler[];
}

export type Route = DirectRoute | ExpressRoute;

/** What makes parseurl leave its fast path (and so may give another pathname): then Express decides. */
const unusualTarget = /[\s#]/;

/** `scheme://authority` at the start of an absolute-form request target (RFC 9112 §3.2.2). */
const absoluteForm = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * A request target split into what the client addressed (`scheme://authority`, only in absolute form)
 * and the path and query, raw: never decoded or re-encoded, so a proxied query reaches the API byte for
 * byte whichever form the client used. An absolute-form target without a path has the path `/`. Under a
 * mount, Express leaves the scheme and host of an absolute-form target in front of `req.url`.
 */
export function splitTarget(target: string): { authority?: string; path: string } {
  const prefix = absoluteForm.exec(target)?.[0];
  if (prefix === undefined) return { path: target };
  const rest = target.slice(prefix.length);
  return { authority: prefix, path: rest.startsWith('/') ? rest : `/${rest}` };
}

/**
 * Whether an absolute-form target names a URL at all (`http://[::1/x`, `http://a:bad/x` do not). Such a
 * target is refused before any router reads it: Node's legacy `url.parse`, under Express and parseurl,
 * throws on some (answered by Express's own HTML 404) and reads others with a path the direct lane would
 * not see (`/:bad/x`), printing a deprecation warning on stderr.
 */
export function validAbsoluteTarget(target: string): boolean {
  const prefix = absoluteForm.exec(target)?.[0];
  return prefix === undefined || URL.canParse(`${prefix}/`);
}

/**
 * The path as Express's router compares it with a route's: the pathname of either form, in lower case
 * (Express matches regardless of case), without the one trailing slash it tolerates.
 */
export function routePath(req: IncomingMessage): string {
  return (parseurl(req)?.pathname ?? '').toLowerCase().replace(/(.)\/$/, '$1');
}

function answers(route: Route, method: string): boolean {
  if (route.methods === 'all') return true;
  return route.methods.some((allowed) => allowed === method || (allowed === 'GET' && method === 'HEAD'));
}

function under(route: Route, path: string): boolean {
  if (path === route.path) return true;
  return route.match === 'mount' && path.startsWith(`${route.path}/`);
}

/** The route Express serves a request by: the first one whose path and method fit, as its router picks. */
export function routeFor(routes: readonly Route[], req: IncomingMessage): Route | undefined {
  const path = routePath(req);
  const method = req.method ?? '';
  return routes.find((route) => under(route, path) && answers(route, method));
}

/** A direct route with how it recognises the plain targets it takes, worked out once. */
export interface DirectTarget {
  route: DirectRoute;
  takes: (url: string, method: string) => boolean;
}

/**
 * The plain targets the direct lane takes: for an exact route, its path exactly as written with or
 * without a query (what browsers send); for a mount, `<mount>/<more>` in any letter case. Anything else
 * (another case of an exact path, a trailing slash, absolute form, `#` or whitespace) is Express's, whose
 * router gives it the same route. The tests are built here, so a request costs a comparison or one
 * precompiled pattern.
 */
export function directTargets(routes: readonly Route[]): DirectTarget[] {
  return routes.flatMap((route) => {
    if (route.lane !== 'direct') return [];
    const method = methodTest(route);
    if (route.match === 'exact') {
      const { path } = route;
      const withQuery = `${path}?`;
      return [{ route, takes: (url, verb) => (url === path || url.startsWith(withQuery)) && method(verb) }];
    }
    // Mounts are `/api/proxy[/<name>]` with names of `[a-z0-9-]`: nothing a pattern reads as syntax.
    const pattern = new RegExp(`^${route.path.replaceAll('/', '\\/')}\\/[^?]`, 'i');
    return [{ route, takes: (url, verb) => pattern.test(url) && method(verb) }];
  });
}

function methodTest(route: Route): (method: string) => boolean {
  if (route.methods === 'all') return () => true;
  return (method) => answers(route, method);
}

/** The direct target for a request, if the direct lane takes it. */
export function directTargetFor<T extends DirectTarget>(
  targets: readonly T[],
  url: string,
  method: string,
): T | undefined {
  if (unusualTarget.test(url)) return undefined;
  for (const target of targets) if (target.takes(url, method)) return target;
  return undefined;
}
