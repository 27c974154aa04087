import { fileURLToPath } from 'node:url';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { JSONWebKeySet } from 'jose';
import type { ApiKeyVerifier } from '../apiKeys.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { DpopProofVerifier } from '../dpop/proof.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { OriginPolicy } from '../origins.js';
import type { ProxyForwarder } from '../proxy/forward.js';
import type { ClientTokens } from '../signing/clientTokens.js';
import type { RevocationList } from '../signing/revocations.js';
import type { RedisStatus } from '../store/redisConnection.js';
import type { TokenCache } from '../upstream/types.js';
import { callerIp } from './callerIp.js';
import { verifyClientToken } from './clientTokenAuth.js';
import { allowedOriginsCors } from './cors.js';
import { fixedHeaders } from './fixedHeaders.js';
import { errorHandler, notFoundHandler } from './problem.js';
import type { RateLimits } from './rateLimits.js';
import { requestContext } from './requestContext.js';
import { requestMetrics } from './requestMetrics.js';
import { claimRoute } from './routes/claim.js';
import { clientTokenRoute } from './routes/clientToken.js';
import { healthRoutes } from './routes/health.js';
import { introspectionRoutes } from './routes/introspection.js';
import { jwksRoute } from './routes/jwks.js';
import { metricsRoute } from './routes/metrics.js';
import { openApiRoute } from './routes/openapi.js';
import { staticRoutes } from './routes/static.js';
import { upstreamTokenRoute } from './routes/upstreamToken.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  originPolicy: OriginPolicy;
  apiKeys: ApiKeyVerifier;
  clientTokens: ClientTokens;
  /** Verifies DPoP proofs at `/api/client-token` and on the proxy (RFC 9449). */
  dpop: DpopProofVerifier;
  publicJwks: JSONWebKeySet;
  cache: TokenCache;
  revocations: RevocationList;
  /** Forwards `/api/proxy/*` to `UPSTREAM_API_URL`; absent when none is configured. */
  proxy?: ProxyForwarder | undefined;
  metrics: Metrics;
  /** Per-IP limits on the token and API-key routes; none when absent. */
  rateLimits?: RateLimits;
  /** Shared-state health for `/readyz` when Redis is configured. */
  redisStatus?: () => RedisStatus;
  /** Serve the demo page at `/` (dev upstream only). */
  demo?: boolean;
}

export const publicDir = fileURLToPath(new URL('../../public/', import.meta.url));

/** Builds the broker's Express app. No side effects: nothing listens, nothing starts. */
export function createApp(deps: AppDeps): Express {
  const { config, logger, originPolicy } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Token answers are never cacheable, so ETags only cost a hash per answer.
  app.set('etag', false);
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');

  app.use(requestContext(logger));
  app.use(requestMetrics(deps.metrics));
  // The policy holds no per-request value (no nonce), so helmet's headers are computed once.
  app.use(
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
  );

  app.use(
    '/api/client-token',
    allowedOriginsCors(originPolicy, { methods: ['GET', 'POST'], allowedHeaders: ['content-type', 'dpop'] }),
  );

  const bodyParsers = [
    express.json({ limit: config.maxBodyBytes, strict: true }),
    express.urlencoded({ extended: false, limit: config.maxBodyBytes, parameterLimit: 20 }),
  ];
  app.use(['/api/auth/claim', '/api/client-token/introspect', '/api/client-token/revoke'], ...bodyParsers);

  const { rateLimits } = deps;
  if (rateLimits) {
    // Exact paths: `app.use('/api/client-token')` would also count introspect and revoke.
    app.all('/api/client-token', rateLimits.clientToken);
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
  app.use(openApiRoute());
  app.use(jwksRoute(deps));
  app.use(clientTokenRoute(deps));
  app.use(claimRoute(deps));
  app.use(upstreamTokenRoute(deps));
  app.use(introspectionRoutes(deps));
  const { proxy } = deps;
  if (proxy) {
    // No body parser runs here: the forwarder streams the request body to the API untouched.
    app.use(
      '/api/proxy',
      allowedOriginsCors(originPolicy, {
        methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
        allowedHeaders: ['authorization', 'x-client-token', 'dpop', 'content-type'],
      }),
      verifyClientToken(deps),
      forwardTo(proxy),
    );
  }
  app.use(staticRoutes({ publicDir, demo: deps.demo ?? false }));

  app.use(notFoundHandler);
  app.use(errorHandler(logger));
  return app;
}

/** Under `app.use('/api/proxy')`, `req.url` is the raw remainder: path and query, never decoded. */
function forwardTo(proxy: ProxyForwarder): RequestHandler {
  return (req, res) =>
    proxy.forward(req, res, {
      path: req.url,
      clientIp: callerIp(req),
      protocol: req.protocol,
      host: req.host,
      log: res.locals.log,
    });
}
