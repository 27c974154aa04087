import { z } from 'zod';
import { int, type RateLimitRule, rateLimit } from './fields.js';

/** How much one caller may ask for: request budgets per client IP and the largest body. */
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
  MAX_BODY_BYTES: int(256, 10_485_760, 16_384).meta({
    description: 'largest accepted body on the JSON/form routes, bytes',
    example: '16384',
  }),
});

type LimitsEnv = z.infer<typeof limitsSchema>;

export interface LimitsConfig {
  /** Per-IP limits; undefined turns a limit off. */
  rateLimits: {
    clientToken: RateLimitRule | undefined;
    claim: RateLimitRule | undefined;
    apiKeyFailures: RateLimitRule | undefined;
  };
  maxBodyBytes: number;
}

export function limitsConfig(e: LimitsEnv): LimitsConfig {
  return {
    rateLimits: {
      clientToken: e.RATE_LIMIT_CLIENT_TOKEN,
      claim: e.RATE_LIMIT_CLAIM,
      apiKeyFailures: e.RATE_LIMIT_API_KEY_FAILURES,
    },
    maxBodyBytes: e.MAX_BODY_BYTES,
  };
}
