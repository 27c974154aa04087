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
import type { Tracer } from '../telemetry/spans.js';
import { traceTokenClient } from '../telemetry/tokenClientSpans.js';
import { tokenIdentity } from './cacheKey.js';
import {
  createMemoryQuotaCounter,
  createQuotaGovernor,
  createRedisQuotaCounter,
  quotaProbeMs,
} from './quota.js';
import type { RenewalPolicy } from './renewalPolicy.js';
import { defaultRenewalPolicy } from './renewalPolicy.js';
import { createStaticKey, type StaticKey } from './staticKey.js';
import { createTokenCache } from './tokenCache.js';
import { createTokenClient } from './tokenClient.js';
import type { CredentialSource, TokenCache, TokenClient, UpstreamCredentials } from './types.js';

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

/** The upstreams as their builder holds them: with the one operation a configuration reload needs. */
export interface UpstreamRegistry extends Upstreams {
  /**
   * Puts the credentials of a new configuration generation in place: the next token request of each
   * cache authenticates with them, and the token held keeps serving until it is renewed. Throws, naming
   * the setting and changing nothing, when upstreams that share a token would no longer agree on it.
   */
  replaceCredentials(next: readonly NamedUpstream[]): void;
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
  /** With tracing on: spans for token lookups, token requests and the fleet lease (telemetry/spans.ts). */
  tracer?: Tracer | undefined;
}

/**
 * Builds one token client, quota and cache per distinct token request, not per name: upstreams that ask
 * for the same token share its cache, single flight and (with Redis) fleet lock and stored copy, while any
 * difference in what is requested gives a cache of its own. Each name gets its own proxy.
 */
export function createUpstreams(deps: UpstreamsDeps): UpstreamRegistry {
  const { logger, clock } = deps;
  const byIdentity = new Map<string, NamedUpstream[]>();
  for (const upstream of deps.upstreams) {
    if (upstream.config.apiKey !== undefined) continue;
    const identity = tokenIdentity(upstream.config);
    byIdentity.set(identity, [...(byIdentity.get(identity) ?? []), upstream]);
  }
  const caches = new Map<string, TokenCache>();
  const tokenClients: TokenClient[] = [];
  /** Each static-key upstream's key, and the value it holds now, by name. */
  const staticKeys = new Map<string, { key: StaticKey; setting: string; current: string }>();
  /** The credentials each shared cache authenticates with now, by the names sharing it. */
  const credentials: { names: string[]; current: UpstreamCredentials }[] = [];
  for (const [identity, group] of byIdentity) {
    const [first] = group as [NamedUpstream, ...NamedUpstream[]];
    // Upstreams sharing a token are counted as one: the label names them all.
    const label = group.map((upstream) => upstream.name).join(',');
    const held = { names: group.map((upstream) => upstream.name), current: credentialsOf(first.config) };
    credentials.push(held);
    const shared = createSharedCache({
      ...deps,
      config: first.config,
      label,
      identity,
      credentials: () => held.current,
    });
    caches.set(identity, shared.cache);
    tokenClients.push(shared.client);
  }
  const list: Upstream[] = deps.upstreams.map(({ name, config, allowedOrigins }) => {
    const log = deps.named ? logger.child({ upstream: name }) : logger;
    const cache = config.apiKey === undefined ? caches.get(tokenIdentity(config)) : undefined;
    let credentials: CredentialSource | undefined = cache;
    if (credentials === undefined) {
      const setting = deps.named ? `${upstreamPrefix(name)}API_KEY` : 'UPSTREAM_API_KEY';
      const key = createStaticKey({ key: config.apiKey as string, setting, logger: log });
      staticKeys.set(name, { key, setting, current: config.apiKey as string });
      credentials = key;
    }
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
    replaceCredentials(next) {
      const configs = new Map(next.map((upstream) => [upstream.name, upstream.config]));
      const owners = new Set<string>();
      const updates: [{ current: UpstreamCredentials }, UpstreamCredentials][] = [];
      for (const held of credentials) {
        const [first] = held.names as [string, ...string[]];
        const config = configs.get(first);
        if (!config) throw new Error(`UPSTREAMS: upstream "${first}" is gone; a reload cannot remove one`);
        const identities = new Set(
          held.names.map((name) => {
            const own = configs.get(name);
            return own ? tokenIdentity(own) : '';
          }),
        );
        const [identity = ''] = identities;
        // The caches were built for one partition of the names; merging or splitting them needs a restart.
        if (identities.size !== 1 || owners.has(identity)) {
          throw new Error(
            `${upstreamPrefix(first)}${credentialSetting(config)}: upstreams sharing one token must keep sharing it, and others must not start to (rotate the files of "${held.names.join('", "')}" together)`,
          );
        }
        owners.add(identity);
        if (!sameCredentials(held.current, config)) updates.push([held, credentialsOf(config)]);
      }
      const keyUpdates: [{ key: StaticKey; current: string }, string][] = [];
      for (const [name, held] of staticKeys) {
        const apiKey = configs.get(name)?.apiKey;
        if (apiKey === undefined) {
          throw new Error(`${held.setting}: a reload cannot turn a static-key upstream into another kind`);
        }
        if (apiKey !== held.current) keyUpdates.push([held, apiKey]);
      }
      for (const [held, replacement] of updates) held.current = replacement;
      for (const [held, apiKey] of keyUpdates) {
        held.key.replace(apiKey);
        held.current = apiKey;
      }
    },
    async close() {
      for (const cache of caches.values()) cache.close();
      await Promise.all([
        ...list.map((upstream) => upstream.proxy?.close()),
        ...tokenClients.map((client) => client.close?.()),
      ]);
    },
  };
}

function credentialsOf(config: NamedUpstream['config']): UpstreamCredentials {
  return {
    clientSecret: config.clientSecret,
    clientKey: config.clientKey,
    clientAssertionFile: config.clientAssertionFile,
    tlsClient: config.tlsClient,
  };
}

function sameCredentials(held: UpstreamCredentials, config: NamedUpstream['config']): boolean {
  return (
    held.clientSecret === config.clientSecret &&
    held.clientKey?.thumbprint === config.clientKey?.thumbprint &&
    held.clientAssertionFile?.identity === config.clientAssertionFile?.identity &&
    held.tlsClient?.generation === config.tlsClient?.generation
  );
}

/** The setting that holds an upstream's credential, for the line that refuses a reload. */
function credentialSetting(config: NamedUpstream['config']): string {
  if (config.authMethod === 'client_assertion_file') return 'CLIENT_ASSERTION_FILE';
  if (config.tlsClient) return 'TLS_CERT_FILE';
  return config.authMethod === 'private_key_jwt' ? 'CLIENT_KEY_FILE' : 'CLIENT_SECRET_FILE';
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
  credentials,
  tracer,
}: UpstreamsDeps & {
  config: NamedUpstream['config'];
  label: string;
  identity: string;
  credentials: () => UpstreamCredentials;
}): { cache: TokenCache; client: TokenClient } {
  const log = named ? logger.child({ upstream: label }) : logger;
  const measured = instrumentTokenClient(
    createTokenClient({ config, clock, logger: log, ...(dispatcher ? { dispatcher } : {}) }),
    metrics,
    label,
  );
  const client = tracer ? traceTokenClient(measured, tracer) : measured;
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
    // Probes while the upstream is down count against a quota: paced to spend at most a tenth of it.
    ...(cachePolicy || config.tokenQuota
      ? {
          policy: {
            ...cachePolicy,
            ...(config.tokenQuota && {
              rejectedProbeMs: Math.max(
                cachePolicy?.rejectedProbeMs ?? defaultRenewalPolicy.rejectedProbeMs,
                quotaProbeMs(config.tokenQuota),
              ),
            }),
          },
        }
      : {}),
    ...(redis ? { lock: redis.lock, lockWaitMs: config.timeoutMs + redis.lockTtlMs } : {}),
    onEvent: (event) => metrics.recordCacheEvent(event, label),
    credentials,
    tracer,
    ...(quota ? { quota } : {}),
  });
  metrics.observeCache(label, () => cache.status());
  // Redis may come back empty: the token this replica holds is written back for the replicas to come.
  redis?.connections.onStatusChange((status) => {
    if (status === 'ok') void cache.shareHeld();
  });
  return { cache, client };
}
