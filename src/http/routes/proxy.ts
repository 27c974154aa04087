import { type RequestHandler, Router } from 'express';
import { upstreamPrefix } from '../../config/upstreamNames.js';
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
import { requireUpstream } from '../upstreamAccess.js';

export interface ProxyRouteDeps {
  upstreams: Upstreams;
  originPolicy: OriginPolicy;
  clientTokens: ClientTokens;
  dpop: DpopProofVerifier;
  config: Pick<Config, 'publicUrl'>;
  /** The per-IP budget of proxied calls; undefined: none. */
  rateLimit?: RequestHandler | undefined;
}

/**
 * `/api/proxy/<name>/*` for each upstream with an API when `UPSTREAMS` is set; `/api/proxy/*` for the
 * one `default` upstream otherwise, as before names existed. An unknown name falls through to 404.
 */
export function proxyRoutes(deps: ProxyRouteDeps): Router {
  const router = Router();
  const cors = allowedOriginsCors(deps.originPolicy, {
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'x-client-token', 'dpop', 'content-type'],
  });
  const verify = verifyClientToken(deps);
  for (const upstream of deps.upstreams.list) {
    const mount = deps.upstreams.named ? `/api/proxy/${upstream.name}` : '/api/proxy';
    if (!upstream.proxy) {
      const setting = deps.upstreams.named ? `${upstreamPrefix(upstream.name)}API_URL` : 'UPSTREAM_API_URL';
      router.use(mount, (_req, _res, next) => {
        next(new BrokerError('not_found', { detail: `the proxy is off: the broker has no ${setting}` }));
      });
      continue;
    }
    const name: RequestHandler = (_req, res, next) => {
      res.locals.upstream = upstream.name;
      next();
    };
    // No body parser runs here: the forwarder streams the request body to the API untouched.
    router.use(
      mount,
      name,
      cors,
      deps.rateLimit ?? [],
      verify,
      requireUpstream(upstream),
      forwardTo(upstream.proxy),
    );
  }
  return router;
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
