import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type ClientRateLimitInfo, ipKeyGenerator, type Store } from 'express-rate-limit';
import { Cluster } from 'ioredis';
import { type RedisReply, RedisStore } from 'rate-limit-redis';
import type { CallerReader } from '../../caller/requestCaller.js';
import type { Clock } from '../../clock.js';
import type { Config, RateLimitRule } from '../../config/index.js';
import { BrokerError } from '../../errors.js';
import type { RedisClient, RedisStatus } from '../../store/redisConnection.js';
import { createWindowCounters } from '../../store/windowCounters.js';
import type { Logger } from '../../telemetry/logger.js';
import type { BrokerResponse, Handler } from '../dispatch/handler.js';

/** One middleware per limited route family; each passes everything when its limit is `off`. */
export interface RateLimits {
  /** `/api/client-token`, per IP. */
  clientToken: Handler;
  /** `/api/auth/claim`, per IP. */
  claim: Handler;
  /** Failed API-key attempts (answers 401) on the API-key routes, per IP; successes are not counted. */
  apiKeyFailures: Handler;
  /** `/api/proxy/*`, per IP, counted before the client token is verified. */
  proxy: Handler;
  /** `/api/client-token/challenge`, per IP. */
  challenge: Handler;
  /**
   * A per-IP allowance counted in the same stores: each call counts one for the caller's address and says
   * whether it is still within `rule`. Unlike the limiters it fails closed: with the store unreachable
   * the answer is `false` (the caller then proves instead of being counted).
   */
  allowance(name: string, rule: RateLimitRule): (req: IncomingMessage) => Promise<boolean>;
}

export interface RateLimitsOptions {
  rules: Config['rateLimits'];
  /** Most addresses each limiter counts in process memory (`RATE_LIMIT_MAX_ADDRESSES`). */
  maxAddresses: number;
  logger: Logger;
  clock: Clock;
  /** Where the caller's address comes from (`TRUST_PROXY`). */
  caller: CallerReader;
  /** Counters shared by the fleet when set; in process memory otherwise. */
  redis?: { client: RedisClient; prefix: string; status: () => RedisStatus } | undefined;
}

const pass: Handler = (_req, _res, next) => next();

/**
 * Per-IP request limits, counted by express-rate-limit's stores: in Redis (rate-limit-redis) when the
 * fleet shares one, so N replicas enforce one budget rather than N, in process memory otherwise. Answers
 * `429 rate_limited` as problem+json with `Retry-After` (RFC 6585 §4) and the IETF `RateLimit` and
 * `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers-08). The middlewares are ours rather
 * than express-rate-limit's, which writes its headers with Express's `res.append` and so cannot run in
 * the direct lane (directRoutes.ts). While Redis is away the limiter fails open: a request is never
 * refused because the counter could not be reached; the outage is what gets logged, not each uncounted
 * request.
 * @see https://www.rfc-editor.org/rfc/rfc6585#section-4
 * @see https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/
 */
export function createRateLimits({
  rules,
  maxAddresses,
  logger: parentLogger,
  clock,
  caller,
  redis,
}: RateLimitsOptions): RateLimits {
  const logger = parentLogger.child({ component: 'rateLimits' });
  // Store errors while Redis is known to be down are expected: one line per transition is logged elsewhere.
  const storeError = (error: unknown, message: string) =>
    redis?.status() === 'degraded'
      ? logger.debug({ err: error }, message)
      : logger.warn({ err: error }, message);

  function storeFor(name: string, rule: RateLimitRule): Store {
    const store: Store = redis
      ? new RedisStore({ prefix: `${redis.prefix}rl:${name}:`, sendCommand: commandSender(redis.client) })
      : createWindowCounters({ clock, windowMs: rule.windowMs, maxKeys: maxAddresses });
    void Promise.resolve(
      store.init?.({ windowMs: rule.windowMs } as Parameters<NonNullable<Store['init']>>[0]),
    ).catch((error: unknown) => storeError(error, 'rate limiter store initialisation failed'));
    return store;
  }

  /** Writes the draft-08 headers (unless another layer already answered); returns the window's seconds left. */
  function writeHeaders(res: BrokerResponse, name: string, rule: RateLimitRule, info: ClientRateLimitInfo) {
    const windowSeconds = Math.ceil(rule.windowMs / 1000);
    const resetSeconds = info.resetTime
      ? Math.max(1, Math.ceil((info.resetTime.getTime() - Date.now()) / 1000))
      : windowSeconds;
    // The count may come back after another layer answered (a stalled body's 408).
    if (!res.headersSent) {
      res.setHeader(
        'RateLimit',
        `"${name}"; r=${Math.max(rule.limit - info.totalHits, 0)}; t=${resetSeconds}`,
      );
      res.setHeader('RateLimit-Policy', `"${name}"; q=${rule.limit}; w=${windowSeconds}`);
    }
    return resetSeconds;
  }

  const refusal = (retryAfterSeconds: number, detail: string) =>
    new BrokerError('rate_limited', { detail, headers: { 'Retry-After': String(retryAfterSeconds) } });

  /** Counts every request, and refuses an address once its count in the window passes the limit. */
  function requestLimiter(name: string, rule: RateLimitRule | undefined): Handler {
    if (!rule) return pass;
    const store = storeFor(name, rule);
    return async (req, res, next) => {
      const key = ipKeyGenerator(caller.ip(req));
      let info: ClientRateLimitInfo;
      try {
        info = await store.increment(key);
      } catch (error) {
        storeError(error, 'rate limiter store unreachable; allowing the request uncounted');
        next();
        return;
      }
      const resetSeconds = writeHeaders(res, name, rule, info);
      if (info.totalHits > rule.limit) {
        next(refusal(resetSeconds, 'too many requests from this address; try again later'));
        return;
      }
      next();
    };
  }

  /**
   * Counts only answers 401 (a wrong or missing API key), after they are sent, and refuses an address
   * once its failures reach the limit. Counting every request first and taking successes back later
   * would let a burst of valid requests trip the limit.
   */
  function failureLimiter(name: string, rule: RateLimitRule | undefined): Handler {
    if (!rule) return pass;
    const store = storeFor(name, rule);
    return async (req, res, next) => {
      const key = ipKeyGenerator(caller.ip(req));
      let info: ClientRateLimitInfo | undefined;
      try {
        info = await store.get?.(key);
      } catch (error) {
        storeError(error, 'rate limiter store unreachable; allowing the request uncounted');
      }
      if (info && info.totalHits >= rule.limit) {
        const resetSeconds = writeHeaders(res, name, rule, info);
        next(refusal(resetSeconds, 'too many failed API-key attempts from this address; try again later'));
        return;
      }
      res.once('finish', () => {
        if (res.statusCode !== 401) return;
        Promise.resolve(store.increment(key)).catch((error: unknown) =>
          storeError(error, 'rate limiter store unreachable'),
        );
      });
      next();
    };
  }

  return {
    clientToken: requestLimiter('client-token', rules.clientToken),
    claim: requestLimiter('claim', rules.claim),
    apiKeyFailures: failureLimiter('api-key-failures', rules.apiKeyFailures),
    proxy: requestLimiter('proxy', rules.proxy),
    challenge: requestLimiter('challenge', rules.challenge),
    allowance(name, rule) {
      const store = storeFor(name, rule);
      return async (req) => {
        try {
          return (await store.increment(ipKeyGenerator(caller.ip(req)))).totalHits <= rule.limit;
        } catch (error) {
          storeError(error, 'rate limiter store unreachable; no allowance without a count');
          return false;
        }
      };
    },
  };
}

/**
 * rate-limit-redis loads its scripts once, when the limiter is built, and keeps the promise: a failure
 * then (Redis not yet reachable) would disable the limiter for good. `SCRIPT LOAD` answers the script's
 * SHA-1, so it is computed here instead when Redis is away; `EVALSHA` then gets `NOSCRIPT` once Redis is
 * back, and the store loads the script again. On a Cluster `SCRIPT LOAD` names no key, so it goes to every
 * master: the `EVALSHA` that follows runs on whichever one holds the counter's slot.
 */
function commandSender(client: RedisClient) {
  return async (...args: string[]): Promise<RedisReply> => {
    const [command = '', ...rest] = args;
    try {
      if (client instanceof Cluster && command.toUpperCase() === 'SCRIPT') {
        const replies = await Promise.all(client.nodes('master').map((node) => node.call(command, ...rest)));
        return replies[0] as RedisReply;
      }
      return (await client.call(command, ...rest)) as RedisReply;
    } catch (error) {
      const script = rest[1];
      if (command.toUpperCase() === 'SCRIPT' && rest[0]?.toUpperCase() === 'LOAD' && script !== undefined) {
        return createHash('sha1').update(script).digest('hex');
      }
      throw error;
    }
  };
}
