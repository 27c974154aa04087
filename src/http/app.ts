import { fileURLToPath } from 'node:url';
import cors from 'cors';
import express, { type Express } from 'express';
import helmet from 'helmet';
import type { JSONWebKeySet } from 'jose';
import type { ApiKeyVerifier } from '../apiKeys.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { normalizeOrigin, type OriginPolicy } from '../origins.js';
import type { ClientTokens } from '../signing/clientTokens.js';
import type { TokenCache } from '../upstream/types.js';
import { errorHandler, notFoundHandler } from './problem.js';
import { requestContext } from './requestContext.js';
import { claimRoute } from './routes/claim.js';
import { clientTokenRoute } from './routes/clientToken.js';
import { healthRoutes } from './routes/health.js';
import { jwksRoute } from './routes/jwks.js';
import { staticRoutes } from './routes/static.js';
import { upstreamTokenRoute } from './routes/upstreamToken.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  originPolicy: OriginPolicy;
  apiKeys: ApiKeyVerifier;
  clientTokens: ClientTokens;
  publicJwks: JSONWebKeySet;
  cache: TokenCache;
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
  app.use(
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
  );

  const allowedOriginsCors = cors({
    origin: (origin, callback) => {
      const normalized = origin === undefined ? undefined : normalizeOrigin(origin);
      callback(null, normalized !== undefined && originPolicy.isAllowed(normalized));
    },
    methods: ['GET', 'POST'],
    allowedHeaders: ['content-type'],
    exposedHeaders: ['retry-after', 'x-request-id'],
    maxAge: 600,
  });
  app.use(
    '/api/client-token',
    (_req, res, next) => {
      res.vary('Origin');
      next();
    },
    allowedOriginsCors,
  );

  const bodyParsers = [
    express.json({ limit: config.maxBodyBytes, strict: true }),
    express.urlencoded({ extended: false, limit: config.maxBodyBytes, parameterLimit: 20 }),
  ];
  app.use('/api/auth/claim', ...bodyParsers);

  app.use(healthRoutes(deps));
  app.use(jwksRoute(deps));
  app.use(clientTokenRoute(deps));
  app.use(claimRoute(deps));
  app.use(upstreamTokenRoute(deps));
  app.use(staticRoutes({ publicDir, demo: deps.demo ?? false }));

  app.use(notFoundHandler);
  app.use(errorHandler(logger));
  return app;
}
