import { z } from 'zod';
import { int, optionalInt, type RateLimitRule, rateLimit } from './fields.js';

/** How much one caller may ask for: request budgets per client IP, body size and pace, open connections. */
export const limitsSchema = z.object({
  RATE_LIMIT_CLIENT_TOKEN: rateLimit('60/minute').meta({
    description:
      'per-IP limit of `/api/client-token`: `<n>/second`, `<n>/minute`, `<n>/hour` or `off` (shared by the fleet through Redis)',
    example: '120/minute',
    default: '60/minute',
  }),
  RATE_LIMIT_CLAIM: rateLimit('600/minute').meta({
    description: 'per-IP limit of `/api/auth/claim`',
    example: '100/second',
    default: '600/minute',
  }),
  RATE_LIMIT_API_KEY_FAILURES: rateLimit('10/minute').meta({
    description: 'per-IP failed API-key attempts; past it the IP is refused even with a valid key',
    example: '10/minute',
    default: '10/minute',
  }),
  RATE_LIMIT_PROXY: rateLimit('6000/minute').meta({
    description: 'per-IP limit of `/api/proxy/*`, counted before the client token is checked',
    example: '100/second',
    default: '6000/minute',
  }),
  RATE_LIMIT_CHALLENGE: rateLimit('30/minute').meta({
    description: 'per-IP limit of `/api/client-token/challenge` (with `CLIENT_TOKEN_ATTESTATION=pow`)',
    example: '30/minute',
    default: '30/minute',
  }),
  CLIENT_TOKEN_MAX_CALLS: optionalInt(1, 1_000_000_000).meta({
    description:
      'proxied calls one client token may make (counted by `jti`, fleet-wide with Redis); past it `429 token_budget_exhausted` and the browser helper fetches a new token. Empty: no limit',
    example: '1000',
  }),
  CLIENT_TOKEN_BUDGET_CACHE_SIZE: int(1_000, 10_000_000, 100_000).meta({
    description:
      'client tokens whose call count each replica remembers (about 150 bytes each); when full the oldest is forgotten: without Redis it then starts over, with Redis it is read back',
    example: '100000',
  }),
  CALL_LEASE_SIZE: int(1, 100_000, 100).meta({
    description:
      'most calls of a budget or call quota a replica leases from Redis in one round trip; the fleet may refuse up to (replicas − 1) × this many calls early, and never serves more than the limit while Redis answers',
    example: '100',
  }),
  RATE_LIMIT_MAX_ADDRESSES: int(1_000, 10_000_000, 100_000).meta({
    description:
      'most addresses (IPv6: `/56` networks) each rate limit counts in process memory without Redis; past it the address whose window began first is forgotten. about 200 bytes each, so at most 4 limits × 100,000 × 200 B ≈ 80 MB by default (see [Operations](operations.md#memory))',
    example: '100000',
  }),
  MAX_BODY_BYTES: int(256, 10_485_760, 16_384).meta({
    description: 'largest accepted body on the JSON/form routes, bytes',
    example: '16384',
  }),
  BODY_IDLE_TIMEOUT_MS: int(100, 600_000, 30_000).meta({
    description:
      'longest pause inside a request body (any route, the proxy included) before `408 request_timeout`, in ms',
    example: '30000',
  }),
  MAX_CONNECTIONS_PER_IP: int(0, 1_000_000, 512).meta({
    description:
      'most open connections from one peer network: an IPv4 address or an IPv6 `/56`, as the rate limits group them (`0`: no limit), WebSockets included; behind a reverse proxy it caps the proxy, so size it for its pool; a refused connection gets `429 rate_limited`',
    example: '512',
  }),
  MAX_CONNECTIONS: optionalInt(0, 10_000_000).meta({
    description:
      "most open connections in all (`0`: no limit); past it a new connection gets `429 rate_limited`, logged and counted in `token_broker_connections_refused_total`. Empty: the process's open-file limit less a quarter (at least 128) for the API, token endpoint and Redis pools",
    example: '10000',
    default: 'three quarters of the open-file limit',
  }),
  IDLE_SOCKET_TIMEOUT_MS: int(100, 300_000, 10_000).meta({
    description:
      "a connection that has sent no complete request headers this long after opening is answered `408 request_timeout` and closed (checked every second), and so is a keep-alive connection idle this long after its last answer (plus a second), in ms; a request whose headers arrived is never cut by it (`BODY_IDLE_TIMEOUT_MS` bounds an upload, `UPSTREAM_TIMEOUT_MS` and `UPSTREAM_API_TIMEOUT_MS` a slow API). Behind a load balancer or reverse proxy that keeps connections to the broker open, set it above that proxy's idle timeout (`65000` for the usual 60 s), so the proxy closes first",
    example: '10000',
  }),
  PROXY_WEBSOCKETS_PER_TOKEN: int(1, 10_000, 8).meta({
    description:
      'most WebSockets one client token holds open through the proxy on one replica; a further handshake gets `429 rate_limited`',
    example: '8',
  }),
});

type LimitsEnv = z.infer<typeof limitsSchema>;

export interface LimitsConfig {
  /** Per-IP limits; undefined turns a limit off. */
  rateLimits: {
    clientToken: RateLimitRule | undefined;
    claim: RateLimitRule | undefined;
    apiKeyFailures: RateLimitRule | undefined;
    proxy: RateLimitRule | undefined;
    challenge: RateLimitRule | undefined;
  };
  /** `CLIENT_TOKEN_MAX_CALLS`: proxied calls per client token; undefined: no budget. */
  maxCallsPerToken: number | undefined;
  /** Client tokens whose count a replica remembers at most. */
  budgetCacheSize: number;
  /** Most calls of a budget or quota leased from Redis at a time. */
  callLeaseSize: number;
  /** Most addresses each in-memory limit counts; the oldest window is forgotten past it. */
  rateLimitMaxAddresses: number;
  maxBodyBytes: number;
  /** Longest silence inside a request body before `408 request_timeout`. */
  bodyIdleTimeoutMs: number;
  /** Most open connections from one peer network (IPv4 address, IPv6 `/56`), WebSockets included; 0: no limit. */
  maxConnectionsPerIp: number;
  /** Most proxied WebSockets one client token holds open on one replica. */
  websocketsPerToken: number;
  /** Most open connections in all; 0: no limit; undefined: derived from the open-file limit. */
  maxConnections: number | undefined;
  /** Closes a connection this long without a request's complete headers, or idle after an answer. */
  idleSocketTimeoutMs: number;
}

export function limitsConfig(e: LimitsEnv): LimitsConfig {
  return {
    rateLimits: {
      clientToken: e.RATE_LIMIT_CLIENT_TOKEN,
      claim: e.RATE_LIMIT_CLAIM,
      apiKeyFailures: e.RATE_LIMIT_API_KEY_FAILURES,
      proxy: e.RATE_LIMIT_PROXY,
      challenge: e.RATE_LIMIT_CHALLENGE,
    },
    maxCallsPerToken: e.CLIENT_TOKEN_MAX_CALLS,
    budgetCacheSize: e.CLIENT_TOKEN_BUDGET_CACHE_SIZE,
    callLeaseSize: e.CALL_LEASE_SIZE,
    rateLimitMaxAddresses: e.RATE_LIMIT_MAX_ADDRESSES,
    maxBodyBytes: e.MAX_BODY_BYTES,
    bodyIdleTimeoutMs: e.BODY_IDLE_TIMEOUT_MS,
    maxConnectionsPerIp: e.MAX_CONNECTIONS_PER_IP,
    websocketsPerToken: e.PROXY_WEBSOCKETS_PER_TOKEN,
    maxConnections: e.MAX_CONNECTIONS,
    idleSocketTimeoutMs: e.IDLE_SOCKET_TIMEOUT_MS,
  };
}
