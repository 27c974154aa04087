import type { Clock } from '../clock.js';
import { BrokerError } from '../errors.js';
import { incrementAboveFloor } from '../store/floorCounter.js';
import type { RedisClient } from '../store/redisConnection.js';
import type { Logger } from '../telemetry/logger.js';

/** Windows are aligned to the period in UTC: a minute, an hour, a calendar day or a calendar month. */
export type QuotaPeriod = 'minute' | 'hour' | 'day' | 'month';

/** `UPSTREAM_TOKEN_QUOTA`: at most `limit` upstream token requests per `period`. */
export interface TokenQuota {
  limit: number;
  period: QuotaPeriod;
}

/**
 * Reads `1000/day`, `100/hour`, `10/minute` or `50000/month`; returns one line saying what is wrong
 * otherwise.
 */
export function parseTokenQuota(text: string): TokenQuota | string {
  const match = /^\s*(\d{1,9})\s*\/\s*(minute|hour|day|month)\s*$/i.exec(text);
  const limit = Number(match?.[1]);
  if (!match || !(limit >= 1)) return 'must be <count>/<minute|hour|day|month>, for example 1000/day';
  return { limit, period: match[2]?.toLowerCase() as QuotaPeriod };
}

const fixedLengths = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

/**
 * The pace of probes while the upstream is down (refusing the configuration, or failing without a token
 * held), so that one replica's probes spend at most a tenth of the budget: a day of probes every 2 s is
 * 43,200 requests, which a budget of 1,000 a day cannot carry. A budget of at least 5 per second of its
 * period (432,000 a day) keeps the 2 s pace.
 */
export function quotaProbeMs(quota: TokenQuota): number {
  const periodMs = quota.period === 'month' ? 30 * fixedLengths.day : fixedLengths[quota.period];
  return Math.ceil((periodMs * 10) / quota.limit);
}

/**
 * The fixed window holding `now`: `[start, end)` in ms since the epoch. Fixed, not sliding, because that
 * is how token endpoints are metered (Auth0 counts machine-to-machine tokens per UTC calendar day and
 * month), so a window of ours never straddles two of the provider's.
 */
export function quotaWindow(period: QuotaPeriod, now: number): { start: number; end: number } {
  if (period === 'month') {
    const date = new Date(now);
    const year = date.getUTCFullYear();
    const month = date.getUTCMonth();
    return { start: Date.UTC(year, month, 1), end: Date.UTC(year, month + 1, 1) };
  }
  const length = fixedLengths[period];
  const start = Math.floor(now / length) * length;
  return { start, end: start + length };
}

/** Counts requests per window; shared by the fleet when it lives in Redis. */
export interface QuotaCounter {
  /** Adds one to `windowKey` and returns the new count; the count is forgotten `ttlMs` from now. */
  increment(windowKey: string, ttlMs: number): Promise<number>;
  /** The count of `windowKey`, 0 when nothing was counted. */
  current(windowKey: string): Promise<number>;
}

/** A counter for one replica; the default without Redis. */
export function createMemoryQuotaCounter({ clock }: { clock: Clock }): QuotaCounter {
  const counts = new Map<string, { count: number; expiresAt: number }>();
  const live = (windowKey: string) => {
    const entry = counts.get(windowKey);
    return entry && entry.expiresAt > clock.now() ? entry : undefined;
  };
  return {
    async increment(windowKey, ttlMs) {
      const now = clock.now();
      // Only a handful of windows are ever alive; dropping the dead ones keeps the map that small.
      for (const [key, entry] of counts) if (entry.expiresAt <= now) counts.delete(key);
      const entry = live(windowKey) ?? { count: 0, expiresAt: now + ttlMs };
      entry.count += 1;
      counts.set(windowKey, entry);
      return entry.count;
    },
    current: async (windowKey) => live(windowKey)?.count ?? 0,
  };
}

// The window's count, raised to the floor (ARGV[2]) when Redis lost it; PEXPIRE lets the window lapse.
const incrementScript = `${incrementAboveFloor({ key: 'KEYS[1]', floor: 'ARGV[2]', ttlMs: 'ARGV[1]' })}
return count`;

/** Windows whose highest count a replica remembers; only the current one matters, the rest is slack. */
const windowsRemembered = 4;

/**
 * A fleet-wide counter in Redis: `INCR` is atomic, so replicas counting at once never lose a request.
 * Each replica remembers the highest count it has seen per window and never lets Redis count below it,
 * so a Redis that restarted empty mid-window does not hand out the spent budget a second time.
 */
export function createRedisQuotaCounter({
  client,
  prefix,
}: {
  client: RedisClient;
  prefix: string;
}): QuotaCounter {
  const highest = new Map<string, number>();
  const remember = (windowKey: string, count: number) => {
    if (count <= (highest.get(windowKey) ?? 0)) return;
    highest.delete(windowKey);
    highest.set(windowKey, count);
    for (const oldest of highest.keys()) {
      if (highest.size <= windowsRemembered) break;
      highest.delete(oldest);
    }
  };
  return {
    async increment(windowKey, ttlMs) {
      const count = Number(
        await client.eval(
          incrementScript,
          1,
          `${prefix}${windowKey}`,
          Math.ceil(ttlMs),
          highest.get(windowKey) ?? 0,
        ),
      );
      remember(windowKey, count);
      return count;
    },
    async current(windowKey) {
      const count = Number((await client.get(`${prefix}${windowKey}`)) ?? 0);
      remember(windowKey, count);
      return Math.max(count, highest.get(windowKey) ?? 0);
    },
  };
}

/**
 * What the cache is about to do: renew a token it still holds (`early`), or fetch one callers need
 * because none is held (`needed`).
 */
export type QuotaRequestKind = 'early' | 'needed';

/**
 * The governor said no. Not an upstream failure: it must not count towards backoff or the circuit
 * breaker, so the cache handles it apart from those.
 */
export class QuotaRefusal extends Error {
  readonly kind: QuotaRequestKind;
  /** Ms since the epoch: when the window resets. */
  readonly resetsAt: number;
  /** What callers waiting for a token are told: `503 upstream_unavailable`, `Retry-After` to the reset. */
  readonly brokerError: BrokerError;

  constructor(kind: QuotaRequestKind, resetsAt: number, now: number) {
    super(kind === 'early' ? 'early renewal paused by the token quota' : 'upstream token quota spent');
    this.name = 'QuotaRefusal';
    this.kind = kind;
    this.resetsAt = resetsAt;
    // RFC 9110 §10.2.3: delay-seconds, a whole number; at least one, as the reset may be ms away.
    const retryAfter = String(Math.max(1, Math.ceil((resetsAt - now) / 1000)));
    this.brokerError = new BrokerError('upstream_unavailable', {
      detail: 'the upstream token quota is spent until the window resets',
      headers: { 'Retry-After': retryAfter },
    });
  }
}

export type QuotaDecision = { allowed: true } | { allowed: false; refusal: QuotaRefusal };

/** For the remaining-budget metric: as this replica last saw the (fleet-wide) count. */
export interface QuotaStatus {
  limit: number;
  used: number;
  /** Ms since the epoch: when the current window ends and the budget is whole again. */
  resetsAt: number;
}

export interface QuotaGovernor {
  /** Asks before each upstream token request, and counts it when it is allowed. Never throws. */
  allow(kind: QuotaRequestKind): Promise<QuotaDecision>;
  status(): QuotaStatus;
}

export interface QuotaGovernorOptions {
  quota: TokenQuota;
  counter: QuotaCounter;
  clock: Clock;
  logger: Logger;
  /** Share of the budget from which early renewals stop and held tokens are served until they expire. */
  earlyRenewalStopRatio?: number;
  /** Share of the budget at which a warning is logged, once per window. */
  warnRatio?: number;
}

/** Redis forgets a window this long after it ended, so replicas whose clocks differ a little agree on it. */
const windowGraceMs = 60_000;

/**
 * Keeps the broker within the upstream's token quota. Early renewals stop once `earlyRenewalStopRatio`
 * of the window's budget is used, so the rest is kept for tokens that actually expire; once the budget
 * is spent, no request goes out until the window resets and callers get `503 upstream_unavailable` with
 * `Retry-After` set to the reset. If the counter cannot be reached, requests are allowed: a governor must
 * not take the site down in order to protect a quota.
 */
export function createQuotaGovernor(options: QuotaGovernorOptions): QuotaGovernor {
  const { quota, counter, clock, earlyRenewalStopRatio = 0.9, warnRatio = 0.8 } = options;
  const logger = options.logger.child({ component: 'tokenQuota' });
  const windowKey = (start: number) => `upstream-token-quota:${quota.period}:${start}`;
  let seen = { start: 0, end: 0, used: 0 };
  /** Per kind of news, the window start it was last logged for: each is logged once per window. */
  const logged = { warn: -1, exhausted: -1, paused: -1, counterDown: -1 };

  function note(window: { start: number; end: number }, used: number): void {
    if (window.start !== seen.start || used > seen.used) seen = { ...window, used };
    const fields = {
      limit: quota.limit,
      used,
      period: quota.period,
      resetsAt: new Date(window.end).toISOString(),
    };
    if (used >= quota.limit && logged.exhausted !== window.start) {
      logged.exhausted = window.start;
      logger.error(fields, 'upstream token quota spent: no token requests until the window resets');
    } else if (used >= quota.limit * warnRatio && logged.warn !== window.start) {
      logged.warn = window.start;
      logger.warn(fields, `upstream token quota ${Math.round(warnRatio * 100)} % used in this window`);
    }
  }

  function refuse(kind: QuotaRequestKind, window: { start: number; end: number }): QuotaDecision {
    if (kind === 'early' && logged.paused !== window.start) {
      logged.paused = window.start;
      logger.info(
        { limit: quota.limit, used: seen.used, resetsAt: new Date(window.end).toISOString() },
        'upstream token quota nearly spent: early renewals paused, held tokens are served until they expire',
      );
    }
    return { allowed: false, refusal: new QuotaRefusal(kind, window.end, clock.now()) };
  }

  async function count(
    window: { start: number; end: number },
    call: () => Promise<number>,
  ): Promise<number | undefined> {
    try {
      return await call();
    } catch (error) {
      if (logged.counterDown !== window.start) {
        logged.counterDown = window.start;
        logger.warn(
          { err: error },
          'upstream token quota counter unreachable: requests are not limited meanwhile',
        );
      }
      return undefined;
    }
  }

  return {
    async allow(kind) {
      const window = quotaWindow(quota.period, clock.now());
      // Counts only grow within a window: once spent, it stays spent here without asking the counter.
      if (seen.start === window.start && seen.used >= quota.limit) return refuse(kind, window);
      if (kind === 'early') {
        const used = await count(window, () => counter.current(windowKey(window.start)));
        if (used !== undefined) note(window, used);
        if (used !== undefined && used >= quota.limit * earlyRenewalStopRatio) return refuse(kind, window);
      }
      const ttlMs = window.end - clock.now() + windowGraceMs;
      const used = await count(window, () => counter.increment(windowKey(window.start), ttlMs));
      if (used === undefined) return { allowed: true };
      note(window, used);
      // Over the limit: another replica took the last request meanwhile (the count stays inflated by
      // one, which only matters inside a window that is spent anyway).
      return used > quota.limit ? refuse(kind, window) : { allowed: true };
    },
    status() {
      const window = quotaWindow(quota.period, clock.now());
      const used = window.start === seen.start ? Math.min(seen.used, quota.limit) : 0;
      return { limit: quota.limit, used, resetsAt: window.end };
    },
  };
}
