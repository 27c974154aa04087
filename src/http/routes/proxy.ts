import { type RequestHandler, Router } from 'express';
import { proxySetting } from '../../config/upstreamNames.js';
import type { Config } from '../../config.js';
import type { DpopProofVerifier } from '../../dpop/proof.js';
import { BrokerError } from '../../errors.js';
import type { OriginPolicy } from '../../origins.js';
import type { ProxyForwarder } from '../../proxy/forward.js';
import type { ClientTokens } from '../../signing/clientTokens.js';
import type { Upstreams } from '../../upstreams.js';
import { callerIp } from '../callerIp.js';
import { verifyClientToken } from '../clientTokenAuth.js';
import { allowedOriginsCors } from '../cors.js';
import { trustedForwardedFor } from '../forwardedFor.js';
import { sequence, unusualTarget } from '../sequence.js';
import { upstreamAdmission } from '../upstreamAccess.js';

export interface ProxyRouteDeps {
  upstreams: Upstreams;
  originPolicy: OriginPolicy;
  clientTokens: ClientTokens;
  dpop: DpopProofVerifier;
  config: Pick<Config, 'publicUrl'>;
  /** The per-IP budget of proxied calls; undefined: none. */
  rateLimit?: RequestHandler | undefined;
}

export interface ProxyRoutes {
  /**
   * Serves the plain case (`<mount>/<more>`, a relative request target) as one layer, mounted right after
   * the global middlewares: the same chains as `router`, run in sequence without the router's per-layer
   * matching. Everything else (absolute-form targets, the bare mount, odd characters) falls through.
   */
  fast: RequestHandler;
  /** Every mount, as Express matches it: where `fast` passed a request on, this serves it. */
  router: Router;
}

/**
 * `/api/proxy/<name>/*` for each upstream with an API when `UPSTREAMS` is set; `/api/proxy/*` for the
 * one `default` upstream otherwise, as before names existed. An unknown name falls through to 404.
 */
export function proxyRoutes(deps: ProxyRouteDeps): ProxyRoutes {
  const router = Router();
  const mounts: { mount: string; chain: RequestHandler[] }[] = [];
  const cors = allowedOriginsCors(deps.originPolicy, {
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'x-client-token', 'dpop', 'content-type'],
  });
  for (const upstream of deps.upstreams.list) {
    const mount = deps.upstreams.named ? `/api/proxy/${upstream.name}` : '/api/proxy';
    if (!upstream.proxy) {
      const { setting } = proxySetting(upstream.name, deps.upstreams.named);
      mounts.push({
        mount,
        chain: [
          (_req, _res, next) => {
            next(new BrokerError('not_found', { detail: `the proxy is off: the broker has no ${setting}` }));
          },
        ],
      });
      continue;
    }
    const name: RequestHandler = (_req, res, next) => {
      res.locals.upstream = upstream.name;
      next();
    };
    // No body parser runs here: the forwarder streams the request body to the API untouched.
    mounts.push({
      mount,
      chain: [
        name,
        ...cors,
        ...(deps.rateLimit ? [deps.rateLimit] : []),
        verifyClientToken({ ...deps, admit: upstreamAdmission(upstream) }),
        forwardTo(upstream.proxy),
      ],
    });
  }
  for (const { mount, chain } of mounts) router.use(mount, ...chain);
  return { fast: fastMounts(mounts), router };
}

/**
 * Does what `app.use(mount, ...chain)` does for a target `<mount>/<more>` (matched case-insensitively,
 * on a segment boundary): strips the mount from `req.url` into `req.baseUrl`, runs the chain, and puts
 * both back before passing anything (an error, or a request the chain let through) on.
 */
function fastMounts(mounts: readonly { mount: string; chain: RequestHandler[] }[]): RequestHandler {
  const compiled = mounts.map(({ mount, chain }) => ({
    // Names are `[a-z0-9-]`, so the mount holds nothing a pattern would read as syntax.
    pattern: new RegExp(`^${mount.replaceAll('/', '\\/')}\\/[^?]`, 'i'),
    length: mount.length,
    run: sequence(chain),
  }));
  return (req, res, next) => {
    const url = req.url;
    const mount = compiled.find(({ pattern }) => pattern.test(url));
    if (mount === undefined || unusualTarget.test(url)) {
      next();
      return;
    }
    const { baseUrl, params } = req;
    const removed = url.slice(0, mount.length);
    req.baseUrl = baseUrl + removed;
    req.url = url.slice(mount.length);
    req.params = {};
    mount.run(req, res, (error?: unknown) => {
      req.baseUrl = baseUrl;
      req.url = removed + req.url;
      req.params = params;
      next(error);
    });
  };
}

/** Under `use('/api/proxy[/<name>]')`, `req.url` is the raw remainder: path and query, never decoded. */
function forwardTo(proxy: ProxyForwarder): RequestHandler {
  return (req, res) =>
    proxy.forward(req, res, {
      path: req.url,
      clientIp: callerIp(req),
      forwardedFor: trustedForwardedFor(req),
      protocol: req.protocol,
      host: req.host,
      log: res.locals.log,
    });
}
