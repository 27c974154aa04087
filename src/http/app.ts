import { fileURLToPath } from 'node:url';
import express from 'express';
import helmet from 'helmet';
import type { JSONWebKeySet } from 'jose';
import type { ApiKeyLabeler } from '../auth/apiKeyLabel.js';
import type { ApiKeyVerifier } from '../auth/apiKeys.js';
import type { OriginPolicy } from '../caller/origins.js';
import type { CallerReader } from '../caller/requestCaller.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config/index.js';
import type { UpstreamProbe } from '../config/startupChecks.js';
import type { DpopProofVerifier } from '../dpop/proof.js';
import type { WebSocketSessions } from '../proxy/websocketSessions.js';
import type { ClientTokens } from '../signing/clientTokens.js';
import type { RevocationList } from '../signing/revocations.js';
import type { RedisStatus } from '../store/redisConnection.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Upstreams } from '../upstream/registry.js';
import { directRoutes, type RequestListener } from './dispatch/directRoutes.js';
import type { Handler } from './dispatch/handler.js';
import { sequence } from './dispatch/sequence.js';
import { type UpgradeListener, upgradeRoutes } from './dispatch/upgrades.js';
import { bodyIdleTimeout } from './middleware/bodyIdleTimeout.js';
import { allowedOriginsCors } from './middleware/cors.js';
import { fixedHeaders } from './middleware/fixedHeaders.js';
import { originHeaderLimit } from './middleware/originHeaderLimit.js';
import type { RateLimits } from './middleware/rateLimits.js';
import { requestContext } from './middleware/requestContext.js';
import { requestMetrics } from './middleware/requestMetrics.js';
import { errorHandler, notFoundHandler } from './problem.js';
import { claimRoute } from './routes/claim.js';
import { clientTokenHandler } from './routes/clientToken.js';
import { healthRoutes } from './routes/health.js';
import { introspectionRoutes } from './routes/introspection.js';
import { jwksRoute } from './routes/jwks.js';
import { metricsRoute } from './routes/metrics.js';
import { openApiRoute } from './routes/openapi.js';
import { proxyRoutes } from './routes/proxy.js';
import { staticRoutes } from './routes/static.js';
import { upstreamTokenRoute } from './routes/upstreamToken.js';
import { websocketSteps } from './routes/websocket.js';

export interface AppDeps {
  config: Config;
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
  publicJwks: JSONWebKeySet;
  /** The configured upstreams: their token caches and the proxies behind `/api/proxy/*`. */
  upstreams: Upstreams;
  revocations: RevocationList;
  /** The proxied WebSockets open on this replica (closed on expiry, revocation and shutdown). */
  websockets: WebSocketSessions;
  metrics: Metrics;
  /** Per-IP limits on the token, API-key and proxy routes; none when absent. */
  rateLimits?: RateLimits;
  /** Shared-state health for `/readyz` when Redis is configured. */
  redisStatus?: () => RedisStatus;
  /** Serve the demo page at `/` (dev upstream only). */
  demo?: boolean;
  /** The start-up probe of each upstream's token endpoint by name, for `/readyz`. */
  upstreamProbes?: ReadonlyMap<string, UpstreamProbe> | undefined;
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
 * Builds the broker's listeners: the direct lane for the proxy and client tokens, Express for the rest
 * (directRoutes.ts), and WebSocket handshakes on the proxy (upgrades.ts). No side effects: nothing
 * listens, nothing starts.
 */
export function createApp(deps: AppDeps): AppListeners {
  const { config, logger, originPolicy } = deps;
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

  const { rateLimits } = deps;
  const clientTokenChain: Handler[] = [
    // The exact path: introspection and revocation under it are for backends, and get no CORS answer.
    ...allowedOriginsCors(originPolicy, {
      methods: ['GET', 'POST'],
      allowedHeaders: ['content-type', 'dpop'],
    }),
    // Exact path: `app.use('/api/client-token')` would also count introspect and revoke.
    ...(rateLimits ? [rateLimits.clientToken] : []),
    clientTokenHandler(deps),
  ];
  const proxy = proxyRoutes({
    ...deps,
    rateLimit: rateLimits?.proxy,
    websocket: websocketSteps({ sessions: deps.websockets, caller: deps.caller, logger }),
  });
  app.all('/api/client-token', ...clientTokenChain);

  const bodyParsers = [
    express.json({ limit: config.maxBodyBytes, strict: true }),
    express.urlencoded({ extended: false, limit: config.maxBodyBytes, parameterLimit: 20 }),
  ];
  app.use(['/api/auth/claim', '/api/client-token/introspect', '/api/client-token/revoke'], ...bodyParsers);

  if (rateLimits) {
    app.post('/api/auth/claim', rateLimits.claim);
    app.use(
      ['/api/auth/claim', '/api/upstream-token', '/api/client-token/introspect', '/api/client-token/revoke'],
      rateLimits.apiKeyFailures,
    );
  }

  app.use(healthRoutes(deps));
  if (config.metrics.port === undefined) {
    app.use(metricsRoute({ ...deps, requireApiKey: config.metrics.requireApiKey }));
  }
  app.use(openApiRoute(deps.upstreams));
  app.use(jwksRoute(deps));
  app.use(claimRoute(deps));
  app.use(upstreamTokenRoute(deps));
  app.use(introspectionRoutes(deps));
  app.use(proxy.router);
  app.use(staticRoutes({ publicDir, clientDir, demo: deps.demo ?? false }));

  const onError = errorHandler(logger);
  app.use(notFoundHandler);
  app.use(onError);
  const request = directRoutes({
    app,
    common,
    exact: [{ path: '/api/client-token', chain: clientTokenChain }],
    mounts: proxy.mounts,
    onError,
  });
  return { request, upgrade: upgradeRoutes({ app: request, common, mounts: proxy.upgrades, onError }) };
}
