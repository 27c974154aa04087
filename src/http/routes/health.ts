import type { RequestHandler } from 'express';
import type { Clock } from '../../clock.js';
import type { ConfigStatus } from '../../config/reloader.js';
import type { UpstreamProbe } from '../../config/startupChecks.js';
import { BrokerError } from '../../errors.js';
import type { RedisStatus } from '../../store/redisConnection.js';
import type { Upstream, Upstreams } from '../../upstream/registry.js';
import type { TokenCache } from '../../upstream/types.js';
import type { UpstreamReadiness } from '../schemas.js';

export interface HealthRouteDeps {
  upstreams: Upstreams;
  clock: Clock;
  /** With Redis: `degraded` while it is unreachable (still ready: requests are served from local state). */
  redisStatus?: () => RedisStatus;
  /** The start-up probe of each upstream's token endpoint: an unreachable one is named in `/readyz`. */
  upstreamProbes?: ReadonlyMap<string, UpstreamProbe> | undefined;
  /** The configuration generation serving and the last reload's outcome. */
  configStatus?: (() => ConfigStatus) | undefined;
}

/** An upstream's OAuth `error` is its own text: enough of it to act on, never a long line. */
const loggedErrorLength = 100;

/**
 * `/healthz`: the process answers (liveness: restart me if not). `/readyz`: a token can be had for every
 * upstream (readiness: send me traffic), reported by name. Readiness asks each cache once, however many
 * names share it; a cache answers from memory when a token is held and otherwise makes the one upstream
 * request everyone would wait for anyway. `/readyz?verbose` says why (docs/operations.md).
 */
export function healthRoutes({
  upstreams,
  clock,
  redisStatus,
  upstreamProbes,
  configStatus,
}: HealthRouteDeps): {
  healthz: RequestHandler;
  readyz: RequestHandler;
} {
  const healthz: RequestHandler = (_req, res) => {
    res.locals.probe = true;
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  };
  const readyz: RequestHandler = async (req, res) => {
    res.locals.probe = true;
    const verbose = req.query.verbose !== undefined;
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
        upstreams.list.map(async (upstream) => {
          const { name, cache } = upstream;
          // A static API key has nothing to obtain: it is ready as configured.
          const found = cache ? withProbe(name, await readiness(cache)) : staticKey;
          return [name, verbose ? { ...found, ...explanation(upstream, clock) } : found] as const;
        }),
      ),
    );
    const ready = Object.values(byName).every((upstream) => upstream.token !== 'unavailable');
    // RFC 9110 §10.2.3: when the last upstream held back by failures is asked again, so when this answer
    // can change.
    const nextAttempt = Math.max(0, ...upstreams.list.map(({ cache }) => cache?.status().nextAttemptAt ?? 0));
    if (!ready && nextAttempt > clock.now()) {
      res.setHeader('Retry-After', String(Math.ceil((nextAttempt - clock.now()) / 1000)));
    }
    const [only] = upstreams.list;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not_ready',
      ...(redisStatus ? { redis: redisStatus() } : {}),
      // A refused reload leaves the broker ready: the generation before it keeps serving.
      ...(configStatus ? { config: configStatus() } : {}),
      // The single-upstream shape of before names existed, kept for existing probes and dashboards; the
      // verbose answer, which no existing probe reads, names each upstream once.
      ...(upstreams.list.length === 1 && only && !verbose ? { upstream: byName[only.name] } : {}),
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

/** Why an upstream is (not) ready, read from its cache's status and its proxy after the readiness check. */
function explanation({ cache, proxy }: Upstream, clock: Clock) {
  const status = cache?.status();
  const now = clock.now();
  const api = proxy?.lastCall();
  return {
    ...(status?.breaker ? { breaker: status.breaker } : {}),
    ...(status?.nextAttemptAt === undefined
      ? {}
      : { nextAttemptIn: Math.max(0, Math.ceil((status.nextAttemptAt - now) / 1000)) }),
    ...(status?.lastError
      ? {
          lastError: {
            error: status.lastError.error.slice(0, loggedErrorLength),
            at: new Date(status.lastError.at).toISOString(),
          },
        }
      : {}),
    ...(api ? { api: { ...api, at: new Date(api.at).toISOString() } } : {}),
  };
}
