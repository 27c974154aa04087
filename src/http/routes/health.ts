import { Router } from 'express';
import type { Clock } from '../../clock.js';
import { BrokerError } from '../../errors.js';
import type { UpstreamProbe } from '../../startupChecks.js';
import type { RedisStatus } from '../../store/redisConnection.js';
import type { TokenCache } from '../../upstream/types.js';

export interface HealthRouteDeps {
  cache: TokenCache;
  clock: Clock;
  /** With Redis: `degraded` while it is unreachable (still ready: requests are served from local state). */
  redisStatus?: () => RedisStatus;
  /** The token endpoint probe at start-up; its reason is shown while no token can be had. */
  upstreamProbe?: UpstreamProbe | undefined;
}

/**
 * `/healthz`: the process answers (liveness: restart me if not). `/readyz`: an upstream token can be had
 * (readiness: send me traffic). Readiness asks the cache, which answers from memory when a token is held
 * and otherwise makes the one upstream request everyone would wait for anyway.
 */
export function healthRoutes({ cache, clock, redisStatus, upstreamProbe }: HealthRouteDeps): Router {
  const atStart = upstreamProbe?.reachable === false ? { unreachableAtStart: upstreamProbe.reason } : {};
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    const shared = redisStatus ? { redis: redisStatus() } : {};
    try {
      const token = await cache.get();
      res.json({
        status: 'ready',
        ...shared,
        upstream: {
          token: 'held',
          expiresIn: Math.max(0, Math.floor((token.expiresAt - clock.now()) / 1000)),
        },
      });
    } catch (error) {
      const code = error instanceof BrokerError ? error.code : 'internal_error';
      res
        .status(503)
        .json({ status: 'not_ready', ...shared, upstream: { token: 'unavailable', code, ...atStart } });
    }
  });
  return router;
}
