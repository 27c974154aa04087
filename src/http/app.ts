import { fileURLToPath } from 'node:url';
import express, { type RequestHandler, Router } from 'express';
import helmet from 'helmet';
import type { JSONWebKeySet } from 'jose';
import type { AttestationGate } from '../attestation/gate.js';
import type { ApiKeyLabeler } from '../auth/apiKeyLabel.js';
import type { ApiKeyVerifier } from '../auth/apiKeys.js';
import type { OriginPolicy } from '../caller/origins.js';
import type { CallerReader } from '../caller/requestCaller.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config/index.js';
import type { ConfigStatus } from '../config/reloader.js';
import type { UpstreamProbe } from '../config/startupChecks.js';
import type { DpopProofVerifier } from '../dpop/proof.js';
import type { WebSocketSessions } from '../proxy/websocketSessions.js';
import type { ClientTokens } from '../signing/clientTokens.js';
import type { RevocationList } from '../signing/revocations.js';
import type { RedisStatus } from '../store/redisConnection.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { traceRequests } from '../telemetry/serverSpans.js';
import type { Tracer } from '../telemetry/spans.js';
import type { Upstreams } from '../upstream/registry.js';
import { directRoutes, type RequestListener } from './dispatch/directRoutes.js';
import type { Handler } from './dispatch/handler.js';
import type { Route } from './dispatch/routeMatcher.js';
import { sequence } from './dispatch/sequence.js';
import { type UpgradeListener, upgradeRoutes } from './dispatch/upgrades.js';
import { bodyIdleTimeout } from './middleware/bodyIdleTimeout.js';
import { fixedHeaders } from './middleware/fixedHeaders.js';
import { originHeaderLimit } from './middleware/originHeaderLimit.js';
import type { RateLimits } from './middleware/rateLimits.js';
import { requestContext } from './middleware/requestContext.js';
import { requestMetrics } from './middleware/requestMetrics.js';
import { errorHandler, notFoundHandler } from './problem.js';
import type { ClaimRouteDeps } from './routes/claim.js';
import type { ClientTokenRouteDeps } from './routes/clientToken.js';
import { type ProxyRouteDeps, websocketMounts } from './routes/proxy.js';
import { websocketSteps } from './routes/websocket.js';
import { routeTable } from './routeTable.js';

/** The settings the app and its routes read: the app's own and each route factory's. */
export type AppConfig = Pick<Config, 'bodyIdleTimeoutMs' | 'maxBodyBytes' | 'metrics'> &
  ClaimRouteDeps['config'] &
  ClientTokenRouteDeps['config'] &
  ProxyRouteDeps['config'];

export interface AppDeps {
  config: AppConfig;
  logger: Logger;
  clock: Clock;
  originPolicy: OriginPolicy;
  apiKeys: ApiKeyVerifier;
  apiKeyLabel: ApiKeyLabeler;
  /** Where a request's caller address, scheme and host come from (`TRUST_PROXY`). */
  caller: CallerReader;
  clientTokens: ClientTokens;
  /** Verifies DPoP proofs at `/api/client-token` and on the proxy (RFC 9449). */
  dpop: DpopProofVerifier;
  /** The public signing keys of the current configuration generation. */
  publicJwks: () => JSONWebKeySet;
  /** The configured upstreams: their token caches and the proxies behind `/api/proxy/*`. */
  upstreams: Upstreams;
  revocations: RevocationList;
  /** The proxied WebSockets open on this replica (closed on expiry, revocation and shutdown). */
  websockets: WebSocketSessions;
  metrics: Metrics;
  /** Per-IP limits on the token, API-key and proxy routes; none when absent. */
  rateLimits?: RateLimits;
  /** With `CLIENT_TOKEN_ATTESTATION` other than `none`: the proof a client token needs first. */
  attestation?: AttestationGate | undefined;
  /** What `/api/client-token/challenge` answers (a `pow` challenge, a widget's site key); no route without it. */
  attestationChallenge?: ((origin: string) => Promise<object>) | undefined;
  /** The proxy step of `CLIENT_TOKEN_MAX_CALLS` (callBudget.ts); none when absent. */
  callBudget?: Handler;
  /** The proxy step of `UPSTREAM_[<NAME>_]CALL_QUOTA` (callQuota.ts) by upstream name. */
  callQuotas?: ReadonlyMap<string, Handler>;
  /** Shared-state health for `/readyz` when Redis is configured. */
  redisStatus?: () => RedisStatus;
  /** Serve the demo page at `/` (dev upstream only). */
  demo?: boolean;
  /** The start-up probe of each upstream's token endpoint by name, for `/readyz`. */
  upstreamProbes?: ReadonlyMap<string, UpstreamProbe> | undefined;
  /** The configuration generation serving and the last reload's outcome, for `/readyz`. */
  configStatus?: () => ConfigStatus;
  /** With tracing on: a server span per request (serverSpans.ts), and the mint's and proxied call's (spans.ts). */
  tracer?: Tracer | undefined;
}

export const publicDir = fileURLToPath(new URL('../../public/', import.meta.url));
/** The browser helper built by `scripts/buildClient.mjs`; the same folder from `src/http/` and `dist/http/`. */
export const clientDir = fileURLToPath(new URL('../../dist/browser/', import.meta.url));

/** What an `http.Server` serves: its `request` and `upgrade` listeners. */
export interface AppListeners {
  request: RequestListener;
  upgrade: UpgradeListener;
}

/**
 * Builds the broker's listeners: the request listener from the route table (routeTable.ts), the direct
 * lane for the hot routes' plain spellings and Express for the rest (directRoutes.ts), and the `upgrade`
 * listener for WebSocket handshakes on the proxy (upgrades.ts). No side effects: nothing listens,
 * nothing starts.
 */
export function createApp(deps: AppDeps): AppListeners {
  const { config, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Token answers are never cacheable, so ETags only cost a hash per answer.
  app.set('etag', false);
  app.set('query parser', 'simple');

  const common: Handler[] = [
    requestContext(logger),
    requestMetrics(deps.metrics),
    // The policy holds no per-request value (no nonce), so helmet's headers are computed once.
    fixedHeaders(
      helmet({
        contentSecurityPolicy: {
          directives: {
            defaultSrc: ["'self'"],
            connectSrc: ["'self'"],
            frameAncestors: ["'none'"],
            formAction: ["'none'"],
          },
        },
      }),
    ),
    originHeaderLimit,
    bodyIdleTimeout(config.bodyIdleTimeoutMs),
  ];
  // One layer for the middlewares every request goes through, rather than a router layer each.
  app.use(sequence(common));

  const routes = routeTable(deps, { publicDir, clientDir });
  app.use(
    expressRouter(routes, [
      express.json({ limit: config.maxBodyBytes, strict: true }),
      express.urlencoded({ extended: false, limit: config.maxBodyBytes, parameterLimit: 20 }),
    ]),
  );
  const onError = errorHandler(logger);
  app.use(notFoundHandler);
  app.use(onError);
  const untraced = directRoutes({ app, common, routes, onError });
  const request = deps.tracer ? traceRequests(deps.tracer, untraced) : untraced;
  const upgrades = websocketMounts({
    ...deps,
    rateLimit: deps.rateLimits?.proxy,
    websocket: websocketSteps({ sessions: deps.websockets, caller: deps.caller, logger }),
  });
  return { request, upgrade: upgradeRoutes({ app: request, common, mounts: upgrades, onError }) };
}

const verbs = { GET: 'get', POST: 'post' } as const;

/**
 * Every route of the table on one router, in its order. One router, so that an `OPTIONS` no route
 * answers gets the router's automatic `Allow` answer before the app's 404.
 */
function expressRouter(routes: readonly Route[], bodyParsers: RequestHandler[]): Router {
  const router = Router();
  for (const route of routes) {
    const { path, chain } = route;
    // Run for any method at the path and under it, as before the table: a bad body is a 400 there too.
    if (route.lane === 'express' && route.parsesBody) router.use(path, ...bodyParsers);
    if (route.match === 'mount') router.use(path, ...chain);
    else if (route.methods === 'all') router.all(path, ...chain);
    else for (const method of route.methods) router[verbs[method]](path, ...chain);
  }
  return router;
}
