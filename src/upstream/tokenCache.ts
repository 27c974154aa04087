import type { Clock } from '../clock.js';
import type { UpstreamConfig } from '../config.js';
import { UpstreamError } from '../errors.js';
import type { Logger } from '../logger.js';
import { createMemoryStore } from '../store/memoryStore.js';
import type { KeyValueStore } from '../store/types.js';
import { cacheKey, tokenFingerprint } from './cacheKey.js';
import { createUpstreamBreaker } from './circuitBreaker.js';
import { createFailureStreak } from './failureStreak.js';
import { defaultRenewalPolicy, isFresh, type RenewalPolicy, renewalTime } from './renewalPolicy.js';
import { createTokenStore } from './tokenStore.js';
import type { TokenCache, TokenClient, UpstreamToken } from './types.js';

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
  config: Pick<
    UpstreamConfig,
    'clientId' | 'clientSecret' | 'profile' | 'authMethod' | 'audience' | 'scope' | 'resource'
  >;
  clock: Clock;
  logger: Logger;
  /** Where tokens persist across restarts (and, with Redis, across replicas); in memory by default. */
  store?: KeyValueStore;
  /** Jitter source in [0, 1). */
  random?: () => number;
  schedule?: Scheduler;
  policy?: Partial<RenewalPolicy>;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The upstream token cache: one upstream request at a time however many callers wait, renewal in the
 * background ahead of expiry, the current token served while renewals fail, backoff and a circuit
 * breaker against a failing upstream. While a valid token is held, `get()` answers from memory at once.
 */
export function createTokenCache(options: TokenCacheOptions): TokenCache {
  const { client, config, clock, random = Math.random, schedule = unrefScheduler } = options;
  const policy: RenewalPolicy = { ...defaultRenewalPolicy, ...options.policy };
  const logger = options.logger.child({ component: 'tokenCache' });
  const store = options.store ?? createMemoryStore({ clock });
  const tokenStore = createTokenStore({ store, clock, logger });
  const breaker = createUpstreamBreaker({
    clock,
    threshold: policy.breakerThreshold,
    openMs: policy.breakerOpenMs,
  });
  const streak = createFailureStreak({ clock, logger, policy, random, breaker });

  let current: UpstreamToken | undefined;
  let renewAt = 0;
  let refreshToken: string | undefined;
  /** The last token the API refused, so a stale copy in the store is never adopted again. */
  let invalidated: string | undefined;
  let key: string | undefined;
  let flight: Promise<UpstreamToken> | undefined;
  let cancelTimer: (() => void) | undefined;
  let closed = false;

  const isValid = (token: UpstreamToken | undefined, now: number): token is UpstreamToken =>
    token !== undefined && now < token.expiresAt;

  async function resolveKey(): Promise<string> {
    key ??= cacheKey({
      tokenEndpoint: await client.tokenEndpoint(),
      clientId: config.clientId,
      authMethod: config.authMethod,
      profile: config.profile,
      scope: config.scope,
      audience: config.audience,
      resource: config.resource,
      secret: config.clientSecret,
    });
    return key;
  }

  /** RFC 6749 §6 when a refresh token is held; §4.4 otherwise, or when the refresh token is refused. */
  async function fetchFromUpstream(): Promise<UpstreamToken> {
    const held = refreshToken;
    if (!held) return client.clientCredentials();
    try {
      const token = await client.refresh(held);
      // §6: the server MAY issue a new refresh token; without one, the old one stays usable.
      return token.refreshToken ? token : { ...token, refreshToken: held };
    } catch (error) {
      if (!(error instanceof UpstreamError && error.error === 'invalid_grant')) throw error;
      logger.info('refresh token refused (invalid_grant); falling back to client credentials');
      refreshToken = undefined;
      return client.clientCredentials();
    }
  }

  async function renew(): Promise<UpstreamToken> {
    try {
      const storeKey = await resolveKey();
      const stored = await tokenStore.load(storeKey);
      const now = clock.now();
      if (
        isValid(stored, now) &&
        stored.accessToken !== invalidated &&
        (isFresh(stored, now, policy) || !isValid(current, now))
      ) {
        return adopt(stored, 'store');
      }
      const token = adopt(await breaker.execute(fetchFromUpstream), 'upstream');
      await tokenStore.save(storeKey, token);
      return token;
    } catch (error) {
      const held = isValid(current, clock.now()) ? current : undefined;
      const refusal = streak.record(error, held?.expiresAt);
      // While a token is held, retry in the background as soon as the backoff allows.
      if (held) scheduleAt(streak.retryAt());
      throw refusal;
    }
  }

  function adopt(token: UpstreamToken, source: 'store' | 'upstream'): UpstreamToken {
    streak.reset();
    current = Object.freeze({ ...token });
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

  return {
    get() {
      const now = clock.now();
      if (isValid(current, now)) {
        if (now >= renewAt) renewInBackground();
        return Promise.resolve(current);
      }
      if (flight) return flight;
      if (now < streak.retryAt()) return Promise.reject(streak.refusal());
      return startFlight();
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
      if (key) await tokenStore.removeIf(key, accessToken);
    },
    status() {
      const now = clock.now();
      const valid = isValid(current, now);
      return {
        hasToken: valid,
        expiresAt: valid ? current?.expiresAt : undefined,
        lastError: streak.lastError(),
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
