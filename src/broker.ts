import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import { createAttestationGate } from './attestation/gate.js';
import { createAttestationProvider } from './attestation/providers.js';
import { createApiKeyLabeler } from './auth/apiKeyLabel.js';
import { createApiKeyVerifier } from './auth/apiKeys.js';
import { createOriginPolicy } from './caller/origins.js';
import { createCallerReader } from './caller/requestCaller.js';
import type { Clock } from './clock.js';
import type { Config } from './config/index.js';
import type { UpstreamProbe } from './config/startupChecks.js';
import { createDpopProofVerifier } from './dpop/proof.js';
import { createMemoryReplayCache, createRedisReplayCache } from './dpop/replayCache.js';
import { createApp } from './http/app.js';
import type { RequestListener } from './http/dispatch/directRoutes.js';
import type { Handler } from './http/dispatch/handler.js';
import type { UpgradeListener } from './http/dispatch/upgrades.js';
import { callBudget } from './http/middleware/callBudget.js';
import { callQuota } from './http/middleware/callQuota.js';
import { createRateLimits } from './http/middleware/rateLimits.js';
import { createMetricsApp } from './http/routes/metrics.js';
import { createWebSocketSessions, type WebSocketSessions } from './proxy/websocketSessions.js';
import { createClientTokens } from './signing/clientTokens.js';
import { loadSigningKeys } from './signing/keys.js';
import { createRevocationList } from './signing/revocations.js';
import { createCallCounter } from './store/callCounter.js';
import { createMemoryStore } from './store/memoryStore.js';
import { connectRedis, type RedisBackend } from './store/redisBackend.js';
import type { Logger } from './telemetry/logger.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';
import { createUpstreams, type Upstreams } from './upstream/registry.js';
import type { RenewalPolicy } from './upstream/renewalPolicy.js';

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
  /** The start-up probe of each upstream's token endpoint by name (startupChecks.ts), shown by `/readyz`. */
  upstreamProbes?: ReadonlyMap<string, UpstreamProbe>;
}

export interface Broker {
  /** Serves every route but the separate `/metrics` (`metricsApp`). */
  app: RequestListener;
  /** The server's `upgrade` listener: WebSockets on the proxy (`server.on('upgrade', broker.upgrade)`). */
  upgrade: UpgradeListener;
  /** The proxied WebSockets open on this replica; `closeAll()` at shutdown, since they never drain. */
  websockets: WebSocketSessions;
  upstreams: Upstreams;
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
  upstreamProbes,
}: BrokerDeps): Promise<Broker> {
  if (config.upstreams.length === 0) throw new Error('no upstream configured');
  const keys = await loadSigningKeys({ jwks: config.signingKeys, production: config.production, logger });
  const metrics = createMetrics({ clock });
  // With Redis the token store, renewal lock, revocations and rate-limit counters are the fleet's.
  const redis = config.redisTarget
    ? await connectRedis({ target: config.redisTarget, settings: config.redis, clock, logger })
    : undefined;
  if (redis) {
    metrics.setRedisDegraded(redis.status() === 'degraded');
    redis.connections.onStatusChange((status) => metrics.setRedisDegraded(status === 'degraded'));
  }
  const store = redis?.store ?? createMemoryStore({ clock });
  const upstreams = createUpstreams({
    upstreams: config.upstreams,
    named: config.namedUpstreams,
    logger,
    clock,
    metrics,
    store,
    redis,
    dispatcher,
    cachePolicy,
  });
  const localRevocations = createRevocationList({
    clock,
    clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
  });
  const fleetRevocations = redis?.shareRevocations(
    localRevocations,
    config.clientToken.clockToleranceSeconds,
  );
  // Loaded before the first request: a replica started after a revocation must refuse the token.
  await fleetRevocations?.ready;
  const revocations = fleetRevocations ?? localRevocations;
  const clientTokens = createClientTokens({ keys, config: config.clientToken, clock, revocations });
  // DPoP proofs seen, fleet-wide with Redis, so a proof is accepted once by the whole fleet.
  const localReplays = createMemoryReplayCache({
    clock,
    maxEntries: config.dpop.replayCacheSize,
    maxPerOwner: config.dpop.proofsPerKey,
  });
  const replayCache = redis
    ? createRedisReplayCache({
        client: redis.connections.client,
        prefix: redis.prefix,
        local: localReplays,
        logger,
      })
    : localReplays;
  const apiKeys = createApiKeyVerifier(config.apiKeys);
  const caller = createCallerReader(config.trustProxy);
  const websockets = createWebSocketSessions({
    clock,
    revocations,
    clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
    maxPerToken: config.websocketsPerToken,
  });
  const rateLimits = createRateLimits({
    rules: config.rateLimits,
    logger,
    caller,
    redis: redis && { client: redis.connections.client, prefix: redis.prefix, status: redis.status },
  });
  const { attestation } = config;
  const attestationProvider = createAttestationProvider({ config, clock, dispatcher });
  // Proofs spent, fleet-wide with Redis: the DPoP replay store's machinery under a key space of its own.
  const attestationReplays = attestationProvider && createMemoryReplayCache({ clock });
  const spentProofs =
    attestationReplays && redis
      ? createRedisReplayCache({
          client: redis.connections.client,
          prefix: redis.prefix,
          local: attestationReplays,
          logger,
          namespace: 'attestation',
        })
      : attestationReplays;
  const { request: app, upgrade } = createApp({
    config,
    logger,
    clock,
    originPolicy: createOriginPolicy(config.allowedOrigins),
    apiKeys,
    apiKeyLabel: createApiKeyLabeler(config.signingKeys),
    caller,
    clientTokens,
    dpop: createDpopProofVerifier({ clock, replayCache, windowSeconds: config.dpop.proofMaxAgeSeconds }),
    publicJwks: keys.publicJwks,
    upstreams,
    revocations,
    websockets,
    metrics,
    rateLimits,
    attestation:
      attestationProvider &&
      spentProofs &&
      createAttestationGate({
        provider: attestationProvider,
        replays: spentProofs,
        allowance: attestation.after && rateLimits.allowance('attestation-allowance', attestation.after),
        failOpen: attestation.provider !== 'app-check' && attestation.siteverify.failOpen,
        metrics,
        clock,
      }),
    attestationChallenge: attestationProvider?.challenge?.bind(attestationProvider),
    ...(redis ? { redisStatus: redis.status } : {}),
    ...callLimits({ config, redis, clock, logger, metrics }),
    demo: demo ?? false,
    upstreamProbes,
  });
  return {
    app,
    upgrade,
    websockets,
    upstreams,
    metrics,
    metricsApp:
      config.metrics.port === undefined
        ? undefined
        : createMetricsApp({ metrics, apiKeys, requireApiKey: config.metrics.requireApiKey, logger }),
    async close() {
      websockets.closeAll();
      websockets.close();
      revocations.close();
      await replayCache.close();
      await spentProofs?.close();
      await upstreams.close();
      await store.close();
      await redis?.close();
    },
  };
}

/**
 * The proxy steps of `CLIENT_TOKEN_MAX_CALLS` and `UPSTREAM_[<NAME>_]CALL_QUOTA`, each only when set, so
 * that the proxy chain holds no step for a feature that is off. With Redis both lease their counts from it.
 */
function callLimits({
  config,
  redis,
  clock,
  logger,
  metrics,
}: {
  config: Config;
  redis: RedisBackend | undefined;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
}): { callBudget?: Handler; callQuotas?: ReadonlyMap<string, Handler> } {
  const counterFor = (name: string, maxEntries: number) =>
    createCallCounter({
      clock,
      maxEntries,
      redis: redis && {
        client: redis.connections.client,
        prefix: `${redis.prefix}calls:${name}:`,
        leaseSize: config.callLeaseSize,
        logger: logger.child({ component: 'callCounter' }),
      },
    });
  const maxCalls = config.maxCallsPerToken;
  const budget =
    maxCalls === undefined
      ? undefined
      : callBudget({
          maxCalls,
          counter: counterFor('budget', config.budgetCacheSize),
          clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
          metrics,
          logger,
        });
  const quotas = new Map<string, Handler>();
  // Each upstream has one live window at a time, and the last one while a lease of it drains.
  const quotaCounter = counterFor('quota', 4 * config.upstreams.length);
  for (const { name, config: upstream } of config.upstreams) {
    if (!upstream.callQuota) continue;
    const quota = callQuota({
      upstream: name,
      quota: upstream.callQuota,
      counter: quotaCounter,
      clock,
      metrics,
      logger,
    });
    metrics.observeCallQuota(name, quota.status);
    quotas.set(name, quota.handler);
  }
  return { ...(budget ? { callBudget: budget } : {}), ...(quotas.size > 0 ? { callQuotas: quotas } : {}) };
}
