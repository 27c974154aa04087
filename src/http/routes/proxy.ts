import type { OriginPolicy } from '../../caller/origins.js';
import type { CallerReader } from '../../caller/requestCaller.js';
import type { Config } from '../../config/index.js';
import { proxySetting } from '../../config/upstreamNames.js';
import type { DpopProofVerifier } from '../../dpop/proof.js';
import { BrokerError } from '../../errors.js';
import type { ProxyForwarder } from '../../proxy/forward.js';
import type { ClientTokens } from '../../signing/clientTokens.js';
import type { Logger } from '../../telemetry/logger.js';
import { inSpan, spanAttributes, spanNames, type Tracer } from '../../telemetry/spans.js';
import type { Upstreams } from '../../upstream/registry.js';
import type { Handler } from '../dispatch/handler.js';
import { splitTarget } from '../dispatch/routeMatcher.js';
import { allowListHandler, upstreamAllowListCheck } from '../middleware/allowList.js';
import { verifyClientToken } from '../middleware/clientTokenAuth.js';
import { allowedOriginsCors } from '../middleware/cors.js';
import { upstreamAdmission } from '../middleware/upstreamAccess.js';
import type { WebSocketSteps } from './websocket.js';

export interface ProxyRouteDeps {
  upstreams: Upstreams;
  originPolicy: OriginPolicy;
  clientTokens: ClientTokens;
  dpop: DpopProofVerifier;
  caller: CallerReader;
  logger: Logger;
  config: Pick<Config, 'publicUrl'>;
  /** The per-IP budget of proxied calls; undefined: none. */
  rateLimit?: Handler | undefined;
  /** The per-token budget of proxied calls (callBudget.ts); undefined: none. */
  callBudget?: Handler | undefined;
  /** The call quota of each upstream that has one (callQuota.ts). */
  callQuotas?: ReadonlyMap<string, Handler> | undefined;
  /** With tracing on: a span per proxied call (telemetry/spans.ts). */
  tracer?: Tracer | undefined;
}

/** One upstream's proxy: the path it is mounted at, and what serves a request under it. */
export interface ProxyMount {
  /** `/api/proxy/<name>`, or `/api/proxy` for the one unnamed upstream. */
  mount: string;
  /** Run with `req.url` relative to the mount, as Express leaves it under `use(mount)`. */
  chain: Handler[];
}

export interface ProxyRoutes {
  /** One per upstream; routeTable.ts makes each a `proxy` route of the direct lane. */
  mounts: ProxyMount[];
}

/**
 * `/api/proxy/<name>/*` for each upstream with an API when `UPSTREAMS` is set; `/api/proxy/*` for the
 * one `default` upstream otherwise, as before names existed. An unknown name falls through to 404.
 */
export function proxyRoutes(deps: ProxyRouteDeps): ProxyRoutes {
  const mounts: ProxyMount[] = [];
  const cors = allowedOriginsCors(deps.originPolicy, {
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    // `traceparent` and `tracestate`: the helper sends the page's trace context (BrokerClientOptions.traceContext).
    allowedHeaders: ['authorization', 'x-client-token', 'dpop', 'content-type', 'traceparent', 'tracestate'],
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
    const name: Handler = (_req, res, next) => {
      res.locals.upstream = upstream.name;
      next();
    };
    const allowList = upstreamAllowListCheck(upstream, deps.upstreams.named);
    const quota = deps.callQuotas?.get(upstream.name);
    // No body parser runs here: the forwarder streams the request body to the API untouched. A call the
    // allow-list refuses spends no budget; the budget comes before the quota, so a token past its budget
    // spends none of the upstream's quota.
    mounts.push({
      mount,
      chain: [
        name,
        ...cors,
        ...(deps.rateLimit ? [deps.rateLimit] : []),
        verifyClientToken({ ...deps, admit: upstreamAdmission(upstream) }),
        // Unset, no step at all: the hot path stays as it was.
        ...(allowList ? [allowListHandler(allowList)] : []),
        ...(deps.callBudget ? [deps.callBudget] : []),
        ...(quota ? [quota] : []),
        deps.tracer
          ? traced(deps.tracer, upstream.name, forwardTo(upstream.proxy, deps.caller, deps.logger))
          : forwardTo(upstream.proxy, deps.caller, deps.logger),
      ],
    });
  }
  return { mounts };
}

/**
 * WebSocket handshakes under each proxy mount with an API, served by the `upgrade` listener
 * (dispatch/upgrades.ts): the checks of a call (rate limit, client token, upstream, allow-list, call
 * budget and quota; the handshake step lets only a GET through, so the allow-list checks `GET <path>`),
 * but the token comes from the offered subprotocol (websocket.ts) and no CORS applies.
 */
export function websocketMounts(deps: ProxyRouteDeps & { websocket: WebSocketSteps }): ProxyMount[] {
  const { websocket } = deps;
  return deps.upstreams.list.flatMap((upstream) => {
    if (!upstream.websocket) return [];
    const admit = upstreamAdmission(upstream);
    const name: Handler = (_req, res, next) => {
      res.locals.upstream = upstream.name;
      next();
    };
    const allowList = upstreamAllowListCheck(upstream, deps.upstreams.named);
    const quota = deps.callQuotas?.get(upstream.name);
    return [
      {
        mount: deps.upstreams.named ? `/api/proxy/${upstream.name}` : '/api/proxy',
        chain: [
          name,
          ...(deps.rateLimit ? [deps.rateLimit] : []),
          websocket.handshake,
          verifyClientToken({
            ...deps,
            admit: (claims, req) => {
              admit(claims, req);
              websocket.admit(claims);
            },
          }),
          ...(allowList ? [allowListHandler(allowList)] : []),
          ...(deps.callBudget ? [deps.callBudget] : []),
          ...(quota ? [quota] : []),
          websocket.accept(upstream.websocket),
        ],
      },
    ];
  });
}

/**
 * Under the mount, `req.url` is the raw remainder: path and query, never decoded. For an absolute-form
 * target (`GET http://host/api/proxy/x`), Express leaves the scheme and host in front of it.
 */
function forwardTo(proxy: ProxyForwarder, caller: CallerReader, logger: Logger): Handler {
  return (req, res) => {
    const { locals } = res;
    return proxy.forward(req, res, {
      path: splitTarget(req.url ?? '/').path,
      clientIp: caller.ip(req),
      forwardedFor: caller.forwardedFor(req),
      protocol: caller.protocol(req),
      host: caller.host(req),
      // A getter: the request's child logger is made only when the forwarder writes a line.
      get log() {
        return locals.log ?? logger;
      },
    });
  };
}

/**
 * The proxied call as a span, chosen when the chain is built so that without tracing the chain is what it
 * was: the upstream, the method and the API's status, and `retried` when a 401 made the forwarder renew
 * the token and send the call again (forward.ts sets it). The token lookup and the API call nest under it.
 */
function traced(tracer: Tracer, upstream: string, forward: Handler): Handler {
  return (req, res, next) =>
    inSpan(
      tracer,
      spanNames.proxy,
      {
        [spanAttributes.upstream]: upstream,
        [spanAttributes.method]: req.method ?? 'GET',
        [spanAttributes.retried]: false,
      },
      async (span) => {
        await forward(req, res, next);
        span.setAttribute(spanAttributes.status, res.statusCode);
      },
    );
}
