import type { Clock } from '../clock.js';
import { UpstreamError } from '../errors.js';
import { createMemoryStore } from '../store/memoryStore.js';
import type { FleetLock, KeyValueStore } from '../store/types.js';
import type { Logger } from '../telemetry/logger.js';
import { inSpan, instantSpan, spanAttributes, spanNames, type Tracer } from '../telemetry/spans.js';
import { cacheKey, cacheKeyInput, type TokenRequestConfig, tokenFingerprint } from './cacheKey.js';
import { createUpstreamBreaker } from './circuitBreaker.js';
import { createFailureStreak } from './failureStreak.js';
import { LockUnreachable, renewAcrossFleet } from './fleetRenewal.js';
import { type QuotaGovernor, QuotaRefusal } from './quota.js';
import {
  defaultRenewalPolicy,
  isFresh,
  type RenewalPolicy,
  renewalMargin,
  renewalTime,
} from './renewalPolicy.js';
import { createTokenStore } from './tokenStore.js';
import type {
  TokenCache,
  TokenCacheEvent,
  TokenClient,
  UpstreamCredentials,
  UpstreamToken,
} from './types.js';

/** Runs `callback` after `ms` without keeping the process alive; returns a function that cancels it. */
export type Scheduler = (callback: () => void, ms: number) => () => void;

export const unrefScheduler: Scheduler = (callback, ms) => {
  const timer = setTimeout(callback, ms);
  timer.unref();
  return () => clearTimeout(timer);
};

/** setTimeout fires at once for delays above 2^31-1 ms; a far renewal is re-armed when the timer fires. */
const maxTimerMs = 2 ** 31 - 1;

export interface TokenCacheOptions {
  client: TokenClient;
  config: TokenRequestConfig;
  clock: Clock;
  logger: Logger;
  /** Where tokens persist across restarts (and, with Redis, across replicas); in memory by default. */
  store?: KeyValueStore;
  /** Jitter source in [0, 1). */
  random?: () => number;
  schedule?: Scheduler;
  policy?: Partial<RenewalPolicy>;
  /** The fleet-wide renewal lock (Redis); without it, single flight is per process. */
  lock?: FleetLock;
  /** How long to wait for another replica's renewal before giving up; 15 s by default. */
  lockWaitMs?: number;
  /** Told what each `get()` did (metrics); must not throw. */
  onEvent?: (event: TokenCacheEvent) => void;
  /** Asked before every upstream request (`UPSTREAM_TOKEN_QUOTA`); without it, requests are not budgeted. */
  quota?: QuotaGovernor;
  /**
   * The credentials of the current configuration generation, read at each renewal (the configured ones
   * by default): a renewal after a reload authenticates with the new ones and stores under their key.
   */
  credentials?: () => UpstreamCredentials;
  /** With tracing on: a span per `get()` (hit, miss, or waited on another caller's request), and the fleet lease's. */
  tracer?: Tracer | undefined;
}

const defaultLockWaitMs = 15_000;
/** Mean pause before a deferred renewal tries the unreachable lock again (Redis reconnects within 1 s). */
const lockRetryMs = 1_000;

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The upstream token cache: one upstream request at a time however many callers wait, renewal in the
 * background ahead of expiry, the current token served while renewals fail, backoff and a circuit
 * breaker against a failing upstream. While a valid token is held, `get()` answers from memory at once.
 */
export function createTokenCache(options: TokenCacheOptions): TokenCache {
  const { client, config, clock, random = Math.random, schedule = unrefScheduler, tracer } = options;
  const onEvent = options.onEvent ?? (() => undefined);
  const policy: RenewalPolicy = { ...defaultRenewalPolicy, ...options.policy };
  const logger = options.logger.child({ component: 'tokenCache' });
  const store = options.store ?? createMemoryStore({ clock });
  const tokenStore = createTokenStore({ store, clock, logger, tracer });
  const breaker = createUpstreamBreaker({
    clock,
    threshold: policy.breakerThreshold,
    openMs: policy.breakerOpenMs,
  });
  const streak = createFailureStreak({ clock, logger, policy, random, breaker });

  let current: UpstreamToken | undefined;
  /** The fleet lease `current` was fetched under (0: none, or taken from the store). */
  let currentFence = 0;
  let renewAt = 0;
  let refreshToken: string | undefined;
  /** The last token the API refused, so a stale copy in the store is never adopted again. */
  let invalidated: string | undefined;
  /** The store key of the credentials last used, and of the token held (fetched under its own credentials). */
  let key: string | undefined;
  let keyCredentials: UpstreamCredentials | undefined;
  let heldKey: string | undefined;
  let flight: Promise<UpstreamToken> | undefined;
  let cancelTimer: (() => void) | undefined;
  let closed = false;

  const isValid = (token: UpstreamToken | undefined, now: number): token is UpstreamToken =>
    token !== undefined && now < token.expiresAt;

  const currentCredentials = options.credentials ?? (() => config);

  /** The key carries the credential's fingerprint: a token is never served for a credential it was not fetched with. */
  async function resolveKey(credentials: UpstreamCredentials): Promise<string> {
    if (key === undefined || credentials !== keyCredentials) {
      const endpoint = await client.tokenEndpoint();
      key = cacheKey(cacheKeyInput({ ...config, ...credentials }, endpoint));
      keyCredentials = credentials;
    }
    return key;
  }

  /** RFC 6749 §6 when a refresh token is held; §4.4 otherwise, or when the refresh token is refused. */
  async function fetchFromUpstream(credentials: UpstreamCredentials): Promise<UpstreamToken> {
    const held = refreshToken;
    if (!held) return client.clientCredentials(credentials);
    try {
      const token = await client.refresh(held, credentials);
      // §6: the server MAY issue a new refresh token; without one, the old one stays usable.
      return token.refreshToken ? token : { ...token, refreshToken: held };
    } catch (error) {
      if (!(error instanceof UpstreamError && error.error === 'invalid_grant')) throw error;
      logger.info('refresh token refused (invalid_grant); falling back to client credentials');
      refreshToken = undefined;
      return client.clientCredentials(credentials);
    }
  }

  async function renew(): Promise<UpstreamToken> {
    let fetchedFence = 0;
    try {
      // One snapshot for the whole renewal: the token fetched is stored under the key of the credential it used.
      const credentials = currentCredentials();
      const storeKey = await resolveKey(credentials);
      const stored = await tokenStore.load(storeKey);
      if (usable(stored)) return adopt(stored, storeKey, credentials, 'store');
      // Past the shared store, before the upstream: with Redis, one replica asks and the others wait.
      const renewed = await renewAcrossFleet({
        lock: options.lock,
        name: storeKey,
        reload: async () => {
          const again = await tokenStore.load(storeKey);
          return usable(again) ? again : undefined;
        },
        fetch: async (fence) => {
          await admit();
          const token = await breaker.execute(() => fetchFromUpstream(credentials));
          await tokenStore.save(storeKey, token, fence);
          fetchedFence = fence ?? 0;
          return token;
        },
        logger,
        waitMs: options.lockWaitMs ?? defaultLockWaitMs,
        random,
        renewWithoutLock: () => !canAwaitLock(),
        tracer,
      });
      return adopt(
        renewed.value,
        storeKey,
        credentials,
        renewed.source,
        renewed.source === 'upstream' ? fetchedFence : 0,
      );
    } catch (error) {
      if (error instanceof QuotaRefusal) return quotaRefused(error);
      if (error instanceof LockUnreachable && isValid(current, clock.now())) return lockDeferred(current);
      const held = isValid(current, clock.now()) ? current : undefined;
      const refusal = streak.record(error, held?.expiresAt);
      // While a token is held, retry in the background as soon as the backoff allows.
      if (held) scheduleAt(streak.retryAt());
      throw refusal;
    }
  }

  /**
   * Until the last quarter of its renewal margin (90 s before expiry for an hour-long token), a renewal
   * that cannot reach the fleet lock waits for it: otherwise every replica would ask the upstream
   * during a Redis failover, which takes seconds.
   */
  function canAwaitLock(): boolean {
    const held = current;
    if (!isValid(held, clock.now())) return false;
    return clock.now() < held.expiresAt - renewalMargin(held.expiresAt - held.obtainedAt, policy) / 4;
  }

  /** Not an upstream failure either: the held token is served and the lock tried again shortly. */
  function lockDeferred(held: UpstreamToken): UpstreamToken {
    scheduleAt(clock.now() + lockRetryMs * (0.5 + random()));
    return held;
  }

  /** Asks the quota governor, if any, before a request goes out: early while a valid token is held. */
  async function admit(): Promise<void> {
    const decision = await options.quota?.allow(isValid(current, clock.now()) ? 'early' : 'needed');
    if (decision && !decision.allowed) throw decision.refusal;
  }

  /**
   * Not an upstream failure, so no backoff and no breaker: a held token is served until it expires or
   * the window resets, whichever comes first; callers without one get 503 with `Retry-After`.
   */
  function quotaRefused(refusal: QuotaRefusal): UpstreamToken {
    const held = isValid(current, clock.now()) ? current : undefined;
    if (!held) throw refusal.brokerError;
    renewAt = Math.min(refusal.resetsAt, held.expiresAt);
    scheduleAt(renewAt);
    return held;
  }

  /** A stored token worth adopting: valid, not the one the API refused, and fresh unless ours has expired. */
  function usable(stored: UpstreamToken | undefined): stored is UpstreamToken {
    const now = clock.now();
    return (
      isValid(stored, now) &&
      stored.accessToken !== invalidated &&
      (isFresh(stored, now, policy) || !isValid(current, now))
    );
  }

  function adopt(
    token: UpstreamToken,
    storeKey: string,
    credentials: UpstreamCredentials,
    source: 'store' | 'upstream',
    fence = 0,
  ): UpstreamToken {
    streak.reset();
    // The key carries the certificate's thumbprint: a stored token was obtained with this certificate too.
    current = Object.freeze(
      credentials.tlsClient ? { ...token, tlsClient: credentials.tlsClient } : { ...token },
    );
    heldKey = storeKey;
    currentFence = fence;
    refreshToken = token.refreshToken;
    renewAt = renewalTime(token, policy, random);
    logger.info(
      {
        source,
        fingerprint: tokenFingerprint(token.accessToken),
        expiresAt: iso(token.expiresAt),
        renewAt: iso(renewAt),
      },
      'upstream token obtained',
    );
    scheduleAt(renewAt);
    return current;
  }

  function startFlight(): Promise<UpstreamToken> {
    flight ??= renew().finally(() => {
      flight = undefined;
    });
    return flight;
  }

  function renewInBackground(): void {
    if (flight || clock.now() < streak.retryAt()) return;
    onEvent('background_renewal');
    // The streak has logged the failure and the retry is armed; nobody waits on this promise.
    startFlight().catch(() => undefined);
  }

  function scheduleAt(at: number): void {
    cancelTimer?.();
    cancelTimer = undefined;
    if (closed) return;
    cancelTimer = schedule(onTimer, Math.min(Math.max(0, at - clock.now()), maxTimerMs));
  }

  function onTimer(): void {
    cancelTimer = undefined;
    const now = clock.now();
    // Without a valid token there is nothing to keep warm: the next get() asks the upstream.
    if (!isValid(current, now)) return;
    const due = Math.max(renewAt, streak.retryAt());
    if (now < due) scheduleAt(due);
    else renewInBackground();
  }

  /** Without a valid token: joins the request in flight, or starts one unless the backoff forbids it. */
  function lookUp(now: number): Promise<UpstreamToken> {
    if (flight) return flight;
    if (now < streak.retryAt()) return Promise.reject(streak.refusal());
    return startFlight();
  }

  return {
    get() {
      const now = clock.now();
      if (isValid(current, now)) {
        onEvent('hit');
        if (now >= renewAt) renewInBackground();
        if (tracer) instantSpan(tracer, spanNames.tokenLookup, { [spanAttributes.cacheResult]: 'hit' });
        return Promise.resolve(current);
      }
      onEvent('miss');
      if (!tracer) return lookUp(now);
      // Started inside the span, so the request it makes (lease, grant, undici) nests under it.
      const result = flight ? 'waited' : 'miss';
      return inSpan(tracer, spanNames.tokenLookup, { [spanAttributes.cacheResult]: result }, () =>
        lookUp(now),
      );
    },
    async invalidate(accessToken) {
      if (current?.accessToken !== accessToken) return;
      current = undefined;
      invalidated = accessToken;
      cancelTimer?.();
      cancelTimer = undefined;
      logger.info(
        { fingerprint: tokenFingerprint(accessToken) },
        'upstream token invalidated: the API refused it',
      );
      if (heldKey) await tokenStore.removeIf(heldKey, accessToken);
    },
    async shareHeld() {
      const held = current;
      const storeKey = heldKey;
      if (!storeKey || !isValid(held, clock.now()) || (await tokenStore.load(storeKey)) !== undefined) return;
      // Fenced by the lease it was fetched under: a newer lease's token wins. This also covers a token
      // fetched just before an outage whose write to the store failed.
      await tokenStore.save(storeKey, held, currentFence);
    },
    status() {
      const now = clock.now();
      const valid = isValid(current, now);
      const retryAt = streak.retryAt();
      return {
        hasToken: valid,
        expiresAt: valid ? current?.expiresAt : undefined,
        lastError: streak.lastError(),
        breaker: breaker.state(),
        ...(retryAt > now ? { nextAttemptAt: retryAt } : {}),
      };
    },
    close() {
      closed = true;
      cancelTimer?.();
      cancelTimer = undefined;
      if (!options.store) void store.close();
    },
  };
}
