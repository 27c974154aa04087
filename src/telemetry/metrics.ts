import { performance } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import { type ErrorCode, UpstreamError } from '../errors.js';
import type { BreakerState } from '../upstream/circuitBreaker.js';
import type { QuotaStatus } from '../upstream/quota.js';
import type { TokenCacheEvent, TokenCacheStatus, TokenClient } from '../upstream/types.js';
import { packageVersion } from '../version.js';

/** Which route minted a client token. */
export type MintRoute = 'client-token' | 'claim';

/** `issued`, or the problem `code` the route answered instead. */
export type MintOutcome = 'issued' | ErrorCode;

/** `valid`, or why a client token presented to the proxy was refused. */
export type VerificationOutcome =
  | 'valid'
  | Extract<
      ErrorCode,
      'invalid_client_token' | 'invalid_dpop_proof' | 'origin_mismatch' | 'ip_mismatch' | 'token_revoked'
    >;

/** `passed`, `refused`, `allowance` (a token without a proof, within `CLIENT_TOKEN_ATTESTATION_AFTER`), `failed_open`. */
export type AttestationOutcome = 'passed' | 'refused' | 'allowance' | 'failed_open';

export type UpstreamGrant = 'client_credentials' | 'refresh_token';

/** Bounded on purpose: an upstream's `error` string is free text and must not become a label value. */
export type UpstreamOutcome =
  | 'success'
  | 'rejected'
  | 'invalid_grant'
  | 'timeout'
  | 'network'
  | 'invalid_response'
  | 'http_error'
  | 'error';

export interface Metrics {
  /** Holds every metric below plus Node's process metrics; `/metrics` serialises it. */
  registry: Registry;
  clientTokens: Counter<'route' | 'outcome'>;
  verifications: Counter<'outcome'>;
  attestations: Counter<'provider' | 'outcome' | 'reason'>;
  upstreamRequests: Histogram<'upstream' | 'grant' | 'outcome'>;
  cacheEvents: Counter<'upstream' | 'event'>;
  proxyRequests: Histogram<'upstream' | 'method' | 'status'>;
  redisDegraded: Gauge;
  refusals: Counter<'code' | 'route'>;
  recordMint(route: MintRoute, outcome: MintOutcome): void;
  recordVerification(outcome: VerificationOutcome): void;
  /** A 4xx problem answer: its `code`, and `route`, a name from a bounded set (never the raw path). */
  recordRefusal(code: ErrorCode, route: string): void;
  /** One proof decision at `/api/client-token`; `reason` is a refusal's bounded reason, else empty. */
  recordAttestation(provider: string, outcome: AttestationOutcome, reason: string): void;
  /**
   * One answer of `/api/proxy/*`: the broker's status (the API's, or a problem), and how long it took;
   * `upstream` is the configured name the route chose, `none` when it named no upstream.
   */
  observeProxyRequest(request: { upstream: string; method: string; status: number; seconds: number }): void;
  /** `upstream` names the upstreams sharing the cache (`uitpas,entry`), as for every token metric. */
  recordCacheEvent(event: TokenCacheEvent, upstream: string): void;
  /** A connection refused by `MAX_CONNECTIONS_PER_IP` (`per_network`) or `MAX_CONNECTIONS` (`total`). */
  recordConnectionRefused(cap: 'per_network' | 'total'): void;
  /** For the Redis store: `true` while it has fallen back to memory (or otherwise cannot reach Redis). */
  setRedisDegraded(degraded: boolean): void;
  /** A cache whose `status()` the expiry and breaker gauges read at each scrape, under `upstream`. */
  observeCache(upstream: string, status: () => TokenCacheStatus): void;
  /** With `UPSTREAM_TOKEN_QUOTA`: the budget gauges, read from `status()` at each scrape. */
  observeQuota(upstream: string, status: () => QuotaStatus): void;
  /** The configuration generation serving now, read at each scrape. */
  observeConfigGeneration(generation: () => number): void;
  /** Proxied WebSockets open or being opened on this replica, read at each scrape. */
  observeWebSockets(open: () => number): void;
  /** One reload of the `*_FILE` settings: applied, unchanged or refused. */
  recordConfigReload(outcome: 'applied' | 'unchanged' | 'refused'): void;
  /** A proxied call refused by `CLIENT_TOKEN_MAX_CALLS` or `UPSTREAM_[<NAME>_]CALL_QUOTA`. */
  recordCallRefusal(code: CallRefusalCode, upstream: string): void;
  /** With `UPSTREAM_[<NAME>_]CALL_QUOTA`: the quota gauges, read from `status()` at each scrape. */
  observeCallQuota(upstream: string, status: () => QuotaStatus): void;
}

export type CallRefusalCode = Extract<ErrorCode, 'token_budget_exhausted' | 'call_quota_exhausted'>;

export interface MetricsOptions {
  clock: Clock;
  /** A fresh registry by default; never prom-client's global one, so two brokers in a process stay apart. */
  registry?: Registry;
}

const prefix = 'token_broker_';
/** Token endpoints answer in tens of milliseconds; a slow one in seconds; timeouts cap at UPSTREAM_TIMEOUT_MS. */
const upstreamBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Proxied calls include the API's own time and streamed bodies, so the range runs longer. */
const proxyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const breakerStates: readonly BreakerState[] = ['closed', 'open', 'half_open'];
/** RFC 9110 §9 methods plus PATCH; anything else is `other`, so a client cannot mint label values. */
const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Builds the broker's Prometheus metrics on their own registry. State lives here, not in prom-client's
 * global default registry, so tests and several brokers in one process never see each other's numbers.
 */
export function createMetrics({ clock, registry = new Registry() }: MetricsOptions): Metrics {
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const cacheStatuses = new Map<string, () => TokenCacheStatus>();
  const quotaStatuses = new Map<string, () => QuotaStatus>();
  const callQuotaStatuses = new Map<string, () => QuotaStatus>();

  const clientTokens = new Counter({
    name: `${prefix}client_tokens_total`,
    help: 'Client token requests by route (client-token, claim) and outcome (issued or the problem code)',
    labelNames: ['route', 'outcome'] as const,
    registers,
  });
  const verifications = new Counter({
    name: `${prefix}client_token_verifications_total`,
    help: 'Client tokens presented to /api/proxy/* by outcome (valid or the problem code)',
    labelNames: ['outcome'] as const,
    registers,
  });
  const attestations = new Counter({
    name: `${prefix}attestations_total`,
    help: 'Proofs asked before minting (CLIENT_TOKEN_ATTESTATION) by provider, outcome and refusal reason',
    labelNames: ['provider', 'outcome', 'reason'] as const,
    registers,
  });
  const connectionsRefused = new Counter({
    name: `${prefix}connections_refused_total`,
    help: 'Connections refused by MAX_CONNECTIONS_PER_IP (per_network) or MAX_CONNECTIONS (total)',
    labelNames: ['cap'] as const,
    registers,
  });
  const upstreamRequests = new Histogram({
    name: `${prefix}upstream_token_request_duration_seconds`,
    help: 'Requests to the upstream token endpoint by upstream, grant and outcome, and their latency',
    labelNames: ['upstream', 'grant', 'outcome'] as const,
    buckets: upstreamBuckets,
    registers,
  });
  const cacheEvents = new Counter({
    name: `${prefix}token_cache_events_total`,
    help: 'Upstream token cache by upstream: hit (answered from memory), miss (caller waited), background_renewal',
    labelNames: ['upstream', 'event'] as const,
    registers,
  });
  const proxyRequests = new Histogram({
    name: `${prefix}proxy_request_duration_seconds`,
    help: 'Answers of /api/proxy/* by upstream, method and status, and their latency until the last byte',
    labelNames: ['upstream', 'method', 'status'] as const,
    buckets: proxyBuckets,
    registers,
  });
  const redisDegraded = new Gauge({
    name: `${prefix}redis_degraded`,
    help: '1 while the Redis store cannot be used and the broker runs on its memory fallback',
    registers,
  });
  new Gauge({
    name: `${prefix}upstream_token_expires_in_seconds`,
    help: 'Seconds until the cached upstream token expires; 0 when none is held',
    labelNames: ['upstream'] as const,
    registers,
    collect() {
      for (const [upstream, cacheStatus] of cacheStatuses) {
        const status = cacheStatus();
        const expiresAt = status.hasToken ? status.expiresAt : undefined;
        this.set({ upstream }, expiresAt === undefined ? 0 : Math.max(0, (expiresAt - clock.now()) / 1000));
      }
    },
  });
  new Gauge({
    name: `${prefix}upstream_breaker_state`,
    help: 'Circuit breaker in front of the token endpoint: 1 for the current state (closed, open, half_open)',
    labelNames: ['upstream', 'state'] as const,
    registers,
    collect() {
      for (const [upstream, cacheStatus] of cacheStatuses) {
        const current = cacheStatus().breaker ?? 'closed';
        for (const state of breakerStates) this.set({ upstream, state }, state === current ? 1 : 0);
      }
    },
  });
  const callRefusals = new Counter({
    name: `${prefix}proxy_call_refusals_total`,
    help: 'Proxied calls refused by upstream and code: token_budget_exhausted (CLIENT_TOKEN_MAX_CALLS), call_quota_exhausted',
    labelNames: ['upstream', 'code'] as const,
    registers,
  });
  const refusals = new Counter({
    name: `${prefix}refusals_total`,
    help: 'Problem answers with a 4xx status by problem code and route (the route name, never the raw path)',
    labelNames: ['code', 'route'] as const,
    registers,
  });
  new Gauge({
    name: `${prefix}build_info`,
    help: 'Always 1; labelled with the broker version and the Node.js version running it',
    labelNames: ['version', 'node'] as const,
    registers,
  }).set({ version: packageVersion, node: process.version }, 1);
  redisDegraded.set(0);
  let configGeneration = () => 1;
  new Gauge({
    name: `${prefix}config_generation`,
    help: 'The configuration generation serving: 1 at start, one more for each applied reload of the *_FILE settings',
    registers,
    collect() {
      this.set(configGeneration());
    },
  });
  let openWebSockets = () => 0;
  new Gauge({
    name: `${prefix}websockets_open`,
    help: 'Proxied WebSockets open or being opened on this replica (PROXY_WEBSOCKETS_PER_TOKEN caps them per token)',
    registers,
    collect() {
      this.set(openWebSockets());
    },
  });
  const configReloads = new Counter({
    name: `${prefix}config_reloads_total`,
    help: 'Reloads of the *_FILE settings (file change or SIGHUP) by outcome: applied, unchanged, refused',
    labelNames: ['outcome'] as const,
    registers,
  });
  // Children bound to their label values once: prom-client hashes a label object on every call otherwise.
  // Every key space is bounded (routes x error codes, outcomes, upstreams x methods x HTTP statuses).
  const mintCounters = boundChildren((labels: { route: MintRoute; outcome: MintOutcome }) =>
    clientTokens.labels(labels),
  );
  const verificationCounters = boundChildren((labels: { outcome: VerificationOutcome }) =>
    verifications.labels(labels),
  );
  const refusalCounters = boundChildren((labels: { code: ErrorCode; route: string }) =>
    refusals.labels(labels),
  );
  const attestationCounters = boundChildren(
    (labels: { provider: string; outcome: AttestationOutcome; reason: string }) =>
      attestations.labels(labels),
  );
  const proxyTimers = boundChildren((labels: { upstream: string; method: string; status: string }) =>
    proxyRequests.labels(labels),
  );

  function registerQuotaGauges(): void {
    new Gauge({
      name: `${prefix}upstream_token_quota_remaining`,
      help: 'Upstream token requests left in the current quota window (UPSTREAM_TOKEN_QUOTA)',
      labelNames: ['upstream'] as const,
      registers,
      collect() {
        for (const [upstream, status] of quotaStatuses) {
          const { limit, used } = status();
          this.set({ upstream }, limit - used);
        }
      },
    });
    new Gauge({
      name: `${prefix}upstream_token_quota_resets_in_seconds`,
      help: 'Seconds until the current quota window ends and the budget is whole again',
      labelNames: ['upstream'] as const,
      registers,
      collect() {
        for (const [upstream, status] of quotaStatuses) {
          this.set({ upstream }, Math.max(0, (status().resetsAt - clock.now()) / 1000));
        }
      },
    });
  }

  function registerCallQuotaGauges(): void {
    new Gauge({
      name: `${prefix}upstream_call_quota_used`,
      help: 'Proxied calls counted in the current window of UPSTREAM_[<NAME>_]CALL_QUOTA (fleet-wide with Redis, leased calls included)',
      labelNames: ['upstream'] as const,
      registers,
      collect() {
        for (const [upstream, status] of callQuotaStatuses) this.set({ upstream }, status().used);
      },
    });
    new Gauge({
      name: `${prefix}upstream_call_quota_limit`,
      help: 'Proxied calls allowed per window by UPSTREAM_[<NAME>_]CALL_QUOTA',
      labelNames: ['upstream'] as const,
      registers,
      collect() {
        for (const [upstream, status] of callQuotaStatuses) this.set({ upstream }, status().limit);
      },
    });
  }

  return {
    registry,
    clientTokens,
    verifications,
    attestations,
    upstreamRequests,
    cacheEvents,
    proxyRequests,
    redisDegraded,
    refusals,
    observeConfigGeneration(generation) {
      configGeneration = generation;
    },
    observeWebSockets(open) {
      openWebSockets = open;
    },
    recordConfigReload: (outcome) => configReloads.inc({ outcome }),
    recordMint: (route, outcome) => mintCounters.get(`${route} ${outcome}`, () => ({ route, outcome })).inc(),
    recordVerification: (outcome) => verificationCounters.get(outcome, () => ({ outcome })).inc(),
    recordRefusal: (code, route) => refusalCounters.get(`${code} ${route}`, () => ({ code, route })).inc(),
    recordAttestation: (provider, outcome, reason) =>
      attestationCounters
        .get(`${provider} ${outcome} ${reason}`, () => ({ provider, outcome, reason }))
        .inc(),
    recordConnectionRefused: (cap) => connectionsRefused.inc({ cap }),
    observeProxyRequest({ upstream, method, status, seconds }) {
      const label = knownMethods.has(method) ? method : 'other';
      proxyTimers
        .get(`${upstream} ${label} ${status}`, () => ({ upstream, method: label, status: String(status) }))
        .observe(seconds);
    },
    recordCacheEvent: (event, upstream) => cacheEvents.inc({ upstream, event }),
    setRedisDegraded: (degraded) => redisDegraded.set(degraded ? 1 : 0),
    observeCache(upstream, status) {
      cacheStatuses.set(upstream, status);
    },
    // Registered only with a quota: an absent gauge says "no governor", a zero would say "budget spent".
    observeQuota(upstream, status) {
      if (quotaStatuses.size === 0) registerQuotaGauges();
      quotaStatuses.set(upstream, status);
    },
    recordCallRefusal: (code, upstream) => callRefusals.inc({ upstream, code }),
    observeCallQuota(upstream, status) {
      if (callQuotaStatuses.size === 0) registerCallQuotaGauges();
      callQuotaStatuses.set(upstream, status);
    },
  };
}

/** A memo of `bind(labels)` by key, for label sets drawn from a bounded space. */
function boundChildren<L, C>(bind: (labels: L) => C) {
  const children = new Map<string, C>();
  return {
    get(key: string, labels: () => L): C {
      let child = children.get(key);
      if (child === undefined) {
        child = bind(labels());
        children.set(key, child);
      }
      return child;
    },
  };
}

/** Maps a token client failure to a bounded label value. */
export function upstreamOutcome(error: unknown): UpstreamOutcome {
  if (!(error instanceof UpstreamError)) return 'error';
  if (error.isConfigurationError) return 'rejected';
  if (error.error.startsWith('http_')) return 'http_error';
  switch (error.error) {
    case 'invalid_grant':
    case 'timeout':
    case 'network':
    case 'invalid_response':
      return error.error;
    default:
      return 'error';
  }
}

/**
 * Wraps a token client so every grant is counted and timed, leaving the client and the cache unaware of
 * metrics. Latency is wall time (`performance.now()`), not the injected clock, which tests may freeze.
 */
export function instrumentTokenClient(client: TokenClient, metrics: Metrics, upstream: string): TokenClient {
  async function timed<T>(grant: UpstreamGrant, call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const observe = (outcome: UpstreamOutcome) =>
      metrics.upstreamRequests.observe({ upstream, grant, outcome }, (performance.now() - started) / 1000);
    try {
      const result = await call();
      observe('success');
      return result;
    } catch (error) {
      observe(upstreamOutcome(error));
      throw error;
    }
  }
  return {
    clientCredentials: (credentials) =>
      timed('client_credentials', () => client.clientCredentials(credentials)),
    refresh: (refreshToken, credentials) =>
      timed('refresh_token', () => client.refresh(refreshToken, credentials)),
    tokenEndpoint: () => client.tokenEndpoint(),
    close: async () => client.close?.(),
  };
}
