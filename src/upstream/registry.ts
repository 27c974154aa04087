import type { Dispatcher } from 'undici';
import { createOriginPolicy, type OriginPolicy } from '../caller/origins.js';
import type { Clock } from '../clock.js';
import type { NamedUpstream } from '../config/index.js';
import { upstreamPrefix } from '../config/upstreamNames.js';
import { type AllowList, compileAllowList } from '../proxy/allowList.js';
import { createProxyForwarder, type ProxyForwarder } from '../proxy/forward.js';
import { createWebSocketForwarder, type WebSocketForwarder } from '../proxy/websocketForward.js';
import type { RedisBackend } from '../store/redisBackend.js';
import type { KeyValueStore } from '../store/types.js';
import type { Logger } from '../telemetry/logger.js';
import { instrumentTokenClient, type Metrics } from '../telemetry/metrics.js';
import { tokenIdentity } from './cacheKey.js';
import { createMemoryQuotaCounter, createQuotaGovernor, createRedisQuotaCounter } from './quota.js';
import type { RenewalPolicy } from './renewalPolicy.js';
import { createStaticKey } from './staticKey.js';
import { createTokenCache } from './tokenCache.js';
import { createTokenClient } from './tokenClient.js';
import type { CredentialSource, TokenCache } from './types.js';

/** One configured upstream at run time: its token cache (perhaps shared) and its proxy. */
export interface Upstream {
  name: string;
  /**
   * Shared by every upstream that asks for the same token (same endpoint, client, scope, audience, ...);
   * undefined for an upstream with a static API key, which has no grant.
   */
  cache: TokenCache | undefined;
  /** What the proxy sends the API: the cache's token, or the static key. */
  credentials: CredentialSource;
  /** Forwards to `UPSTREAM_<NAME>_API_URL`; undefined when none is set. */
  proxy: ProxyForwarder | undefined;
  /** Opens WebSockets to the same API; undefined when no API URL is set. */
  websocket: WebSocketForwarder | undefined;
  /** `UPSTREAM_<NAME>_ALLOWED_ORIGINS`; undefined: every origin the broker admits. */
  origins: OriginPolicy | undefined;
  /** `UPSTREAM_<NAME>_ALLOW`, compiled; undefined: every method and path. */
  allow: AllowList | undefined;
}

export interface Upstreams {
  /** In the order of `UPSTREAMS`. */
  list: readonly Upstream[];
  /** `UPSTREAMS` is set: proxy routes carry the name. */
  named: boolean;
  get(name: string): Upstream | undefined;
  /** The names a client token for `origin` may open, in the order of `UPSTREAMS`. */
  reachableFrom(origin: string): string[];
  close(): Promise<void>;
}

export interface UpstreamsDeps {
  upstreams: readonly NamedUpstream[];
  named: boolean;
  logger: Logger;
  clock: Clock;
  metrics: Metrics;
  store: KeyValueStore;
  redis: RedisBackend | undefined;
  dispatcher?: Dispatcher | undefined;
  cachePolicy?: Partial<RenewalPolicy> | undefined;
}

/**
 * Builds one token client, quota and cache per distinct token request, not per name: upstreams that ask
 * for the same token share its cache, single flight and (with Redis) fleet lock and stored copy, while any
 * difference in what is requested gives a cache of its own. Each name gets its own proxy.
 */
export function createUpstreams(deps: UpstreamsDeps): Upstreams {
  const { logger, clock } = deps;
  const byIdentity = new Map<string, NamedUpstream[]>();
  for (const upstream of deps.upstreams) {
    if (upstream.config.apiKey !== undefined) continue;
    const identity = tokenIdentity(upstream.config);
    byIdentity.set(identity, [...(byIdentity.get(identity) ?? []), upstream]);
  }
  const caches = new Map<string, TokenCache>();
  for (const [identity, group] of byIdentity) {
    const [first] = group as [NamedUpstream, ...NamedUpstream[]];
    // Upstreams sharing a token are counted as one: the label names them all.
    const label = group.map((upstream) => upstream.name).join(',');
    caches.set(identity, createSharedCache({ ...deps, config: first.config, label, identity }));
  }
  const list: Upstream[] = deps.upstreams.map(({ name, config, allowedOrigins }) => {
    const log = deps.named ? logger.child({ upstream: name }) : logger;
    const cache = config.apiKey === undefined ? caches.get(tokenIdentity(config)) : undefined;
    const credentials =
      cache ??
      createStaticKey({
        key: config.apiKey as string,
        setting: deps.named ? `${upstreamPrefix(name)}API_KEY` : 'UPSTREAM_API_KEY',
        logger: log,
      });
    const proxy = config.apiUrl
      ? createProxyForwarder({
          apiUrl: config.apiUrl,
          credentials,
          credentialIn: config.credentialIn,
          logger: log,
          clock,
          timeouts: {
            connectMs: config.timeoutMs,
            headersMs: config.timeoutMs,
            bodyMs: config.timeoutMs,
            totalMs: config.apiTimeoutMs,
            streamIdleMs: config.streamIdleMs,
          },
          maxReplayBytes: config.maxReplayBytes,
        })
      : undefined;
    const websocket = config.apiUrl
      ? createWebSocketForwarder({
          apiUrl: config.apiUrl,
          credentials,
          credentialIn: config.credentialIn,
          handshakeTimeoutMs: config.timeoutMs,
        })
      : undefined;
    return {
      name,
      cache,
      credentials,
      proxy,
      websocket,
      origins: allowedOrigins && createOriginPolicy(allowedOrigins),
      allow: config.allow && compileAllowList(config.allow),
    };
  });
  const byName = new Map(list.map((upstream) => [upstream.name, upstream]));
  return {
    list,
    named: deps.named,
    get: (name) => byName.get(name),
    reachableFrom: (origin) =>
      list.filter((upstream) => upstream.origins?.isAllowed(origin) ?? true).map((upstream) => upstream.name),
    async close() {
      for (const cache of caches.values()) cache.close();
      await Promise.all(list.map((upstream) => upstream.proxy?.close()));
    },
  };
}

function createSharedCache({
  config,
  label,
  identity,
  named,
  logger,
  clock,
  metrics,
  store,
  redis,
  dispatcher,
  cachePolicy,
}: UpstreamsDeps & { config: NamedUpstream['config']; label: string; identity: string }): TokenCache {
  const log = named ? logger.child({ upstream: label }) : logger;
  const client = instrumentTokenClient(
    createTokenClient({ config, clock, logger: log, ...(dispatcher ? { dispatcher } : {}) }),
    metrics,
    label,
  );
  // With Redis the budget is counted fleet-wide, as the upstream meters it; each token counts its own.
  const quota = config.tokenQuota
    ? createQuotaGovernor({
        quota: config.tokenQuota,
        counter: redis
          ? createRedisQuotaCounter({
              client: redis.connections.client,
              prefix: named ? `${redis.prefix}${identity}:` : redis.prefix,
            })
          : createMemoryQuotaCounter({ clock }),
        clock,
        logger: log,
      })
    : undefined;
  if (quota) metrics.observeQuota(label, () => quota.status());
  const cache = createTokenCache({
    client,
    config,
    store,
    clock,
    logger: log,
    ...(cachePolicy ? { policy: cachePolicy } : {}),
    ...(redis ? { lock: redis.lock, lockWaitMs: config.timeoutMs + redis.lockTtlMs } : {}),
    onEvent: (event) => metrics.recordCacheEvent(event, label),
    ...(quota ? { quota } : {}),
  });
  metrics.observeCache(label, () => cache.status());
  // Redis may come back empty: the token this replica holds is written back for the replicas to come.
  redis?.connections.onStatusChange((status) => {
    if (status === 'ok') void cache.shareHeld();
  });
  return cache;
}
