import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import { createApiKeyVerifier } from './apiKeys.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { createDpopProofVerifier } from './dpop/proof.js';
import { createMemoryReplayCache, createRedisReplayCache } from './dpop/replayCache.js';
import { createApp } from './http/app.js';
import { createRateLimits } from './http/rateLimits.js';
import { createMetricsApp } from './http/routes/metrics.js';
import type { Logger } from './logger.js';
import { createMetrics, instrumentTokenClient, type Metrics } from './metrics.js';
import { createOriginPolicy } from './origins.js';
import { createProxyForwarder } from './proxy/forward.js';
import { createClientTokens } from './signing/clientTokens.js';
import { loadSigningKeys } from './signing/keys.js';
import { createRevocationList } from './signing/revocations.js';
import type { UpstreamProbe } from './startupChecks.js';
import { createMemoryStore } from './store/memoryStore.js';
import { connectRedis } from './store/redisBackend.js';
import { createMemoryQuotaCounter, createQuotaGovernor, createRedisQuotaCounter } from './upstream/quota.js';
import type { RenewalPolicy } from './upstream/renewalPolicy.js';
import { createTokenCache } from './upstream/tokenCache.js';
import { createTokenClient } from './upstream/tokenClient.js';
import type { TokenCache } from './upstream/types.js';

export interface BrokerDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  /** undici dispatcher for upstream requests; the global one by default. */
  dispatcher?: Dispatcher;
  /** Serve the demo page (dev upstream only). */
  demo?: boolean;
  /** Overrides of the token cache's renewal, backoff and breaker timings (tests shorten them). */
  cachePolicy?: Partial<RenewalPolicy>;
  /** The start-up probe of the token endpoint (startupChecks.ts), shown by `/readyz`. */
  upstreamProbe?: UpstreamProbe;
}

export interface Broker {
  app: Express;
  cache: TokenCache;
  metrics: Metrics;
  /** `/metrics` alone, for `METRICS_PORT`; undefined when the main app serves it. */
  metricsApp: Express | undefined;
  /** Stops timers and closes pools; the HTTP server is the caller's to close. */
  close(): Promise<void>;
}

/** Builds every part from the config and wires them into the app. Nothing listens. */
export async function createBroker({
  config,
  logger,
  clock,
  dispatcher,
  demo,
  cachePolicy,
  upstreamProbe,
}: BrokerDeps): Promise<Broker> {
  const upstream = config.upstream;
  if (!upstream) throw new Error('no upstream configured');
  const keys = await loadSigningKeys({ jwks: config.signingKeys, production: config.production, logger });
  const metrics = createMetrics({ clock });
  const client = instrumentTokenClient(
    createTokenClient({
      config: upstream,
      clock,
      logger,
      ...(dispatcher ? { dispatcher } : {}),
    }),
    metrics,
  );
  // With Redis the token store, renewal lock, revocations and rate-limit counters are the fleet's.
  const redis = config.redisUrl
    ? await connectRedis({ url: config.redisUrl, settings: config.redis, clock, logger })
    : undefined;
  if (redis) {
    metrics.setRedisDegraded(redis.status() === 'degraded');
    redis.connections.onStatusChange((status) => metrics.setRedisDegraded(status === 'degraded'));
  }
  const store = redis?.store ?? createMemoryStore({ clock });
  // With Redis the budget is counted fleet-wide, as the upstream meters it.
  const quota = upstream.tokenQuota
    ? createQuotaGovernor({
        quota: upstream.tokenQuota,
        counter: redis
          ? createRedisQuotaCounter({ client: redis.connections.client, prefix: redis.prefix })
          : createMemoryQuotaCounter({ clock }),
        clock,
        logger,
      })
    : undefined;
  if (quota) metrics.observeQuota(() => quota.status());
  const cache = createTokenCache({
    client,
    config: upstream,
    store,
    clock,
    logger,
    ...(cachePolicy ? { policy: cachePolicy } : {}),
    ...(redis ? { lock: redis.lock, lockWaitMs: upstream.timeoutMs + redis.lockTtlMs } : {}),
    onEvent: metrics.recordCacheEvent,
    ...(quota ? { quota } : {}),
  });
  metrics.observeCache(() => cache.status());
  const localRevocations = createRevocationList({
    clock,
    clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
  });
  const revocations = redis
    ? redis.shareRevocations(localRevocations, config.clientToken.clockToleranceSeconds)
    : localRevocations;
  const clientTokens = createClientTokens({ keys, config: config.clientToken, clock, revocations });
  // DPoP proofs seen, fleet-wide with Redis, so a proof is accepted once by the whole fleet.
  const localReplays = createMemoryReplayCache({ clock });
  const replayCache = redis
    ? createRedisReplayCache({
        client: redis.connections.client,
        prefix: redis.prefix,
        local: localReplays,
        logger,
      })
    : localReplays;
  const proxy = upstream.apiUrl
    ? createProxyForwarder({
        apiUrl: upstream.apiUrl,
        cache,
        logger,
        clock,
        timeouts: {
          connectMs: upstream.timeoutMs,
          headersMs: upstream.timeoutMs,
          bodyMs: upstream.timeoutMs,
          totalMs: upstream.apiTimeoutMs,
        },
        maxReplayBytes: upstream.maxReplayBytes,
      })
    : undefined;
  const apiKeys = createApiKeyVerifier(config.apiKeys);
  const app = createApp({
    config,
    logger,
    clock,
    originPolicy: createOriginPolicy(config.allowedOrigins),
    apiKeys,
    clientTokens,
    dpop: createDpopProofVerifier({ clock, replayCache }),
    publicJwks: keys.publicJwks,
    cache,
    revocations,
    proxy,
    metrics,
    rateLimits: createRateLimits({
      rules: config.rateLimits,
      logger,
      redis: redis && { client: redis.connections.client, prefix: redis.prefix, status: redis.status },
    }),
    ...(redis ? { redisStatus: redis.status } : {}),
    demo: demo ?? false,
    upstreamProbe,
  });
  return {
    app,
    cache,
    metrics,
    metricsApp:
      config.metrics.port === undefined
        ? undefined
        : createMetricsApp({ metrics, apiKeys, requireApiKey: config.metrics.requireApiKey, logger }),
    async close() {
      cache.close();
      revocations.close();
      await replayCache.close();
      await proxy?.close();
      await store.close();
      await redis?.close();
    },
  };
}
