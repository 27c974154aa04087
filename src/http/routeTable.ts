import { challengePath } from '../attestation/pow.js';
import { BrokerError } from '../errors.js';
import type { AppDeps } from './app.js';
import type { Handler } from './dispatch/handler.js';
import type { Route } from './dispatch/routeMatcher.js';
import { allowedOriginsCors } from './middleware/cors.js';
import { attestationChallengeHandler } from './routes/attestationChallenge.js';
import { claimHandler } from './routes/claim.js';
import { clientTokenHandler } from './routes/clientToken.js';
import { healthRoutes } from './routes/health.js';
import { introspectionRoutes } from './routes/introspection.js';
import { jwksHandler } from './routes/jwks.js';
import { metricsHandler } from './routes/metrics.js';
import { openApiHandler } from './routes/openapi.js';
import { proxyRoutes } from './routes/proxy.js';
import { staticFiles } from './routes/static.js';
import { upstreamTokenHandler } from './routes/upstreamToken.js';

/** Where the static files are read from (app.ts knows the folders). */
export interface StaticFolders {
  publicDir: string;
  clientDir: string;
}

/**
 * Every route of the broker, by name, in the order Express tries them: its methods, its path, its chain
 * and the lane that serves it. The direct lane (dispatch/directRoutes.ts) serves the `direct` ones in
 * their plain spellings; Express (app.ts) mounts them all, for every other spelling and for the rest.
 * Global middlewares (request id, metrics, security headers, body idle timeout) run ahead of every
 * chain in both lanes and are app.ts's. A route's name is what `res.locals.route` carries.
 */
export function routeTable(deps: AppDeps, folders: StaticFolders): Route[] {
  const { config, rateLimits, upstreams } = deps;
  const limited = (limit: Handler | undefined) => (limit ? [limit] : []);
  // Counts the 401s of the API-key routes; an address past its limit is refused before the key is read.
  const keyFailures = limited(rateLimits?.apiKeyFailures);
  const health = healthRoutes(deps);
  const introspection = introspectionRoutes(deps);
  const routes: Route[] = [
    {
      name: 'clientToken',
      methods: 'all',
      path: '/api/client-token',
      match: 'exact',
      lane: 'direct',
      chain: [
        // The exact path: introspection and revocation under it are for backends, and get no CORS answer.
        ...allowedOriginsCors(deps.originPolicy, {
          methods: ['GET', 'POST'],
          allowedHeaders: ['content-type', 'dpop', 'attestation'],
          refusalsReadable: true,
        }),
        ...limited(rateLimits?.clientToken),
        clientTokenHandler(deps),
      ],
    },
    // With CLIENT_TOKEN_ATTESTATION only; its answers are as cold as the proofs they lead to.
    ...(deps.attestationChallenge
      ? [
          {
            name: 'attestationChallenge',
            methods: 'all',
            path: challengePath,
            match: 'exact',
            lane: 'express',
            chain: [
              ...allowedOriginsCors(deps.originPolicy, { methods: ['GET', 'POST'], allowedHeaders: [] }),
              ...limited(rateLimits?.challenge),
              attestationChallengeHandler({
                originPolicy: deps.originPolicy,
                challenge: deps.attestationChallenge,
              }),
            ],
          } satisfies Route,
        ]
      : []),
    ...proxyRoutes({ ...deps, rateLimit: rateLimits?.proxy }).mounts.map(
      ({ mount, chain }): Route => ({
        name: 'proxy',
        methods: 'all',
        path: mount,
        match: 'mount',
        lane: 'direct',
        chain,
      }),
    ),
  ];
  if (upstreams.named) {
    // A name no upstream has: 404, counted by the proxy metrics (upstream `none`), with the names there are.
    const names = upstreams.list.filter(({ proxy }) => proxy).map(({ name }) => name);
    const unknownUpstream: Handler = (_req, _res, next) => {
      next(
        new BrokerError('not_found', {
          detail: `no such upstream; the proxy routes are ${names.map((name) => `/api/proxy/${name}/*`).join(', ') || 'all off'}`,
        }),
      );
    };
    routes.push({
      name: 'proxy',
      methods: 'all',
      path: '/api/proxy',
      match: 'mount',
      lane: 'express',
      chain: [unknownUpstream],
    });
  }
  routes.push(
    {
      name: 'claim',
      methods: ['POST'],
      path: '/api/auth/claim',
      match: 'exact',
      lane: 'express',
      parsesBody: true,
      chain: [...limited(rateLimits?.claim), ...keyFailures, claimHandler(deps)],
    },
    {
      name: 'upstreamToken',
      methods: ['GET'],
      path: '/api/upstream-token',
      match: 'exact',
      lane: 'express',
      chain: [...keyFailures, upstreamTokenHandler(deps)],
    },
    {
      name: 'introspect',
      methods: ['POST'],
      path: '/api/client-token/introspect',
      match: 'exact',
      lane: 'express',
      parsesBody: true,
      chain: [...keyFailures, introspection.introspect],
    },
    {
      name: 'revoke',
      methods: ['POST'],
      path: '/api/client-token/revoke',
      match: 'exact',
      lane: 'express',
      parsesBody: true,
      chain: [...keyFailures, introspection.revoke],
    },
    {
      name: 'healthz',
      methods: ['GET'],
      path: '/healthz',
      match: 'exact',
      lane: 'express',
      chain: [health.healthz],
    },
    {
      name: 'readyz',
      methods: ['GET'],
      path: '/readyz',
      match: 'exact',
      lane: 'express',
      chain: [health.readyz],
    },
  );
  if (config.metrics.port === undefined) {
    routes.push({
      name: 'metrics',
      methods: ['GET'],
      path: '/metrics',
      match: 'exact',
      lane: 'express',
      chain: [metricsHandler({ ...deps, requireApiKey: config.metrics.requireApiKey })],
    });
  }
  routes.push(
    {
      name: 'openapi',
      methods: ['GET'],
      path: '/openapi.json',
      match: 'exact',
      lane: 'express',
      chain: [openApiHandler(upstreams)],
    },
    {
      name: 'jwks',
      methods: ['GET'],
      path: '/.well-known/jwks.json',
      match: 'exact',
      lane: 'express',
      chain: [jwksHandler(deps)],
    },
    ...staticFiles({ ...folders, demo: deps.demo ?? false }).map(
      ({ path, handler }): Route => ({
        name: 'static',
        methods: ['GET'],
        path,
        match: 'exact',
        lane: 'express',
        chain: [handler],
      }),
    ),
  );
  return routes;
}
