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
import { type ConfigReloader, type ConfigReloaderDeps, createConfigReloader } from './config/reloader.js';
import type { UpstreamProbe } from './config/startupChecks.js';
import { createDpopProofVerifier } from './dpop/proof.js';
import { createMemoryReplayCache, createRedisReplayCache } from './dpop/replayCache.js';
import { createApp } from './http/app.js';
import { type ClientErrorListener, clientErrorListener } from './http/clientErrors.js';
import {
  type ConnectionCap,
  type ConnectionCaps,
  createConnectionCaps,
  defaultMaxConnections,
} from './http/connectionCaps.js';
import type { RequestListener } from './http/dispatch/directRoutes.js';
import type { Handler } from './http/dispatch/handler.js';
import type { UpgradeListener } from './http/dispatch/upgrades.js';
import { callBudget } from './http/middleware/callBudget.js';
import { callQuota } from './http/middleware/callQuota.js';
import { createRateLimits } from './http/middleware/rateLimits.js';
import { createMetricsApp } from './http/routes/metrics.js';
import { createWebSocketSessions, type WebSocketSessions } from './proxy/websocketSessions.js';
import { createClientTokens } from './signing/clientTokens.js';
import { createSigningKeyRing } from './signing/keyRing.js';
import { loadSigningKeys, type SigningKeys } from './signing/keys.js';
import { createRevocationList } from './signing/revocations.js';
import { createCallCounter } from './store/callCounter.js';
import { createMemoryStore } from './store/memoryStore.js';
import { connectRedis, type RedisBackend } from './store/redisBackend.js';
import type { Logger } from './telemetry/logger.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';
import type { Tracer } from './telemetry/spans.js';
import { createUpstreams, type Upstreams } from './upstream/registry.js';
import type { RenewalPolicy } from './upstream/renewalPolicy.js';

/** Open connections the `METRICS_PORT` listener takes at most: a few Prometheus servers and a person. */
const metricsPortConnections = 32;

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
  /**
   * The environment `config` was loaded from: its `*_FILE` settings are watched and re-read into new
   * configuration generations (config/reloader.ts). Without it the configuration is fixed.
   */
  reload?: Pick<ConfigReloaderDeps, 'env' | 'readFile' | 'watchFiles' | 'debounceMs'>;
  /**
   * With tracing on (main.ts, when `OTEL_*` asks for it): the broker's own spans (telemetry/spans.ts).
   * Without one, no span is started and nothing of tracing runs on any path.
   */
  tracer?: Tracer | undefined;
}

export interface Broker {
  /** Serves every route but the separate `/metrics` (`metricsApp`). */
  app: RequestListener;
  /** The server's `upgrade` listener: WebSockets on the proxy (`server.on('upgrade', broker.upgrade)`). */
  upgrade: UpgradeListener;
  /**
   * The server's `clientError` listener: what Node's HTTP parser or its timeouts refuse is answered with
   * the broker's problem+json, logged and counted (`server.on('clientError', broker.clientError)`).
   */
  clientError: ClientErrorListener;
  /** The proxied WebSockets open on this replica; `closeAll()` at shutdown, since they never drain. */
  websockets: WebSocketSessions;
  upstreams: Upstreams;
  metrics: Metrics;
  /**
   * `MAX_CONNECTIONS_PER_IP`, `MAX_CONNECTIONS` and `IDLE_SOCKET_TIMEOUT_MS`, for every socket the broker
   * serves: `limitServer` applies them to an HTTP server (made with `serverOptions`), and a module that
   * takes a socket over (an upgrade) keeps it counted.
   */
  connectionCaps: ConnectionCaps;
  /** The `METRICS_PORT` listener's caps: the same per network, and `metricsPortConnections` in all. */
  metricsConnectionCaps: ConnectionCaps;
  /** `/metrics` alone, for `METRICS_PORT`; undefined when the main app serves it. */
  metricsApp: Express | undefined;
  /** With `reload`: re-reads the `*_FILE` settings (main.ts calls it on SIGHUP). */
  reloader: ConfigReloader | undefined;
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
  reload,
  tracer,
}: BrokerDeps): Promise<Broker> {
  if (config.upstreams.length === 0) throw new Error('no upstream configured');
  const keys = createSigningKeyRing(
    await loadSigningKeys({ jwks: config.signingKeys, production: config.production, logger, clock }),
  );
  const metrics = createMetrics({ clock });
  // Everything opened so far, closed in reverse by close(), or at once if a later step throws.
  const opened: (() => unknown)[] = [];
  const closeOpened = async () => {
    for (const close of opened.splice(0).reverse()) await close();
  };
  try {
    // With Redis the token store, renewal lock, revocations and rate-limit counters are the fleet's.
    const redis = config.redisTarget
      ? await connectRedis({ target: config.redisTarget, settings: config.redis, clock, logger })
      : undefined;
    if (redis) {
      opened.push(() => redis.close());
      metrics.setRedisDegraded(redis.status() === 'degraded');
      redis.connections.onStatusChange((status) => metrics.setRedisDegraded(status === 'degraded'));
    }
    const store = redis?.store ?? createMemoryStore({ clock });
    opened.push(() => store.close());
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
      tracer,
    });
    opened.push(() => upstreams.close());
    const localRevocations = createRevocationList({
      clock,
      clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
    });
    const fleetRevocations = redis?.shareRevocations(
      localRevocations,
      config.clientToken.clockToleranceSeconds,
    );
    opened.push(() => (fleetRevocations ?? localRevocations).close());
    // Loaded before the first request: a replica started after a revocation must refuse the token.
    await fleetRevocations?.ready;
    const revocations = fleetRevocations ?? localRevocations;
    const clientTokens = createClientTokens({ keys, config: config.clientToken, clock, revocations });
    const websockets = createWebSocketSessions({
      clock,
      revocations,
      clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
      maxPerToken: config.websocketsPerToken,
    });
    metrics.observeWebSockets(websockets.size);
    // Open sockets never drain: close() ends them, before the revocations they listen to.
    opened.push(() => {
      websockets.closeAll();
      websockets.close();
    });
    // DPoP proofs seen, fleet-wide with Redis, so a proof is accepted once by the whole fleet.
    const localReplays = createMemoryReplayCache({
      clock,
      maxEntries: config.dpop.replayCacheSize,
      maxPerOwner: config.dpop.proofsPerKey,
      windowMs: config.dpop.proofMaxAgeSeconds * 1000,
    });
    const replayCache = redis
      ? createRedisReplayCache({
          client: redis.connections.client,
          prefix: redis.prefix,
          local: localReplays,
          logger,
        })
      : localReplays;
    opened.push(() => replayCache.close());
    const apiKeys = createApiKeyVerifier(config.apiKeys);
    const caller = createCallerReader(config.trustProxy);
    const rateLimits = createRateLimits({
      rules: config.rateLimits,
      maxAddresses: config.rateLimitMaxAddresses,
      logger,
      clock,
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
    if (spentProofs) opened.push(() => spentProofs.close());
    let signingKeys = JSON.stringify(config.signingKeys);
    /**
     * Whole or nothing: what can refuse the generation (the signing keys, the upstreams' shared tokens) is
     * checked first and changes nothing; then every part takes its new secrets at once.
     */
    const applyGeneration = async (next: Config): Promise<void> => {
      const nextSigningKeys = JSON.stringify(next.signingKeys);
      // Without SIGNING_KEYS the ephemeral key of this process stays.
      const loadedKeys =
        next.signingKeys && nextSigningKeys !== signingKeys
          ? await loadSigningKeys({
              jwks: next.signingKeys,
              production: next.production,
              logger,
              clock,
            }).catch((error: unknown) => {
              throw new Error(`SIGNING_KEYS_FILE: ${(error as Error).message}`);
            })
          : undefined;
      upstreams.replaceCredentials(next.upstreams);
      if (loadedKeys) {
        warnActiveOnArrival(loadedKeys);
        keys.replace(loadedKeys);
        signingKeys = nextSigningKeys;
      }
      apiKeys.replace(next.apiKeys);
      if (redis && next.redisTarget) redis.replaceSecrets(next.redisTarget, next.redis);
    };
    /** A key that signs as soon as it arrives may reach a replica or a JWKS cache that has not seen it yet. */
    const warnActiveOnArrival = (next: SigningKeys): void => {
      const { kid } = next.signer;
      if (keys.activations.some((key) => key.kid === kid)) return;
      logger.warn(
        { kid },
        'a new signing key signs on arrival: give it an activation time (keys rotate --activate-in) so that every replica and JWKS cache has it first',
      );
    };
    const reloader =
      reload &&
      createConfigReloader({
        ...reload,
        logger,
        clock,
        apply: applyGeneration,
        onReload: (result) => metrics.recordConfigReload(result.outcome),
      });
    if (reloader) {
      opened.push(() => reloader.close());
      metrics.observeConfigGeneration(() => reloader.status().generation);
    }
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
      publicJwks: () => keys.publicJwks,
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
          tracer,
        }),
      attestationChallenge: attestationProvider?.challenge?.bind(attestationProvider),
      ...(redis ? { redisStatus: redis.status } : {}),
      ...callLimits({ config, redis, clock, logger, metrics }),
      demo: demo ?? false,
      upstreamProbes,
      tracer,
      ...(reloader ? { configStatus: reloader.status } : {}),
    });
    const capsOptions = {
      maxPerNetwork: config.maxConnectionsPerIp,
      idleTimeoutMs: config.idleSocketTimeoutMs,
      logger,
      clock,
      onRefused: (cap: ConnectionCap) => metrics.recordConnectionRefused(cap),
    };
    return {
      app,
      upgrade,
      clientError: clientErrorListener({ logger, metrics }),
      websockets,
      upstreams,
      metrics,
      connectionCaps: createConnectionCaps({
        ...capsOptions,
        maxTotal: config.maxConnections ?? defaultMaxConnections(),
      }),
      // Caps of its own, so that scrapes still answer while the main port is full (an attack is when
      // they matter); its few sockets come out of the descriptors the main port's cap leaves free.
      metricsConnectionCaps: createConnectionCaps({ ...capsOptions, maxTotal: metricsPortConnections }),
      metricsApp:
        config.metrics.port === undefined
          ? undefined
          : createMetricsApp({ metrics, apiKeys, requireApiKey: config.metrics.requireApiKey, logger }),
      reloader,
      close: closeOpened,
    };
  } catch (error) {
    await closeOpened().catch((closeError: unknown) =>
      logger.warn({ err: closeError }, 'closing what start-up opened failed'),
    );
    throw error;
  }
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
