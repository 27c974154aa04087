import type { RequestHandler } from 'express';
import type { Clock } from '../../clock.js';
import type { UpstreamProbe } from '../../config/startupChecks.js';
import { BrokerError } from '../../errors.js';
import type { RedisStatus } from '../../store/redisConnection.js';
import type { Upstreams } from '../../upstream/registry.js';
import type { TokenCache } from '../../upstream/types.js';
import type { UpstreamReadiness } from '../schemas.js';

export interface HealthRouteDeps {
  upstreams: Upstreams;
  clock: Clock;
  /** With Redis: `degraded` while it is unreachable (still ready: requests are served from local state). */
  redisStatus?: () => RedisStatus;
  /** The start-up probe of each upstream's token endpoint: an unreachable one is named in `/readyz`. */
  upstreamProbes?: ReadonlyMap<string, UpstreamProbe> | undefined;
}

/**
 * `/healthz`: the process answers (liveness: restart me if not). `/readyz`: a token can be had for every
 * upstream (readiness: send me traffic), reported by name. Readiness asks each cache once, however many
 * names share it; a cache answers from memory when a token is held and otherwise makes the one upstream
 * request everyone would wait for anyway.
 */
export function healthRoutes({ upstreams, clock, redisStatus, upstreamProbes }: HealthRouteDeps): {
  healthz: RequestHandler;
  readyz: RequestHandler;
} {
  const healthz: RequestHandler = (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  };
  const readyz: RequestHandler = async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    const asked = new Map<TokenCache, Promise<UpstreamReadiness>>();
    const readiness = (cache: TokenCache) => {
      const answer = asked.get(cache) ?? readinessOf(cache, clock);
      asked.set(cache, answer);
      return answer;
    };
    const withProbe = (name: string, readiness: UpstreamReadiness): UpstreamReadiness => {
      const probe = upstreamProbes?.get(name);
      return readiness.token === 'unavailable' && probe?.reachable === false
        ? { ...readiness, unreachableAtStart: probe.reason }
        : readiness;
    };
    const byName = Object.fromEntries(
      await Promise.all(
        upstreams.list.map(
          async ({ name, cache }) =>
            // A static API key has nothing to obtain: it is ready as configured.
            [name, cache ? withProbe(name, await readiness(cache)) : staticKey] as const,
        ),
      ),
    );
    const ready = Object.values(byName).every((upstream) => upstream.token !== 'unavailable');
    const [only] = upstreams.list;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not_ready',
      ...(redisStatus ? { redis: redisStatus() } : {}),
      // The single-upstream shape of before names existed, kept for existing probes and dashboards.
      ...(upstreams.list.length === 1 && only ? { upstream: byName[only.name] } : {}),
      upstreams: byName,
    });
  };
  return { healthz, readyz };
}

const staticKey: UpstreamReadiness = { token: 'api_key' };

async function readinessOf(cache: TokenCache, clock: Clock): Promise<UpstreamReadiness> {
  try {
    const token = await cache.get();
    return { token: 'held', expiresIn: Math.max(0, Math.floor((token.expiresAt - clock.now()) / 1000)) };
  } catch (error) {
    return { token: 'unavailable', code: error instanceof BrokerError ? error.code : 'internal_error' };
  }
}
