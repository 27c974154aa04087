import { z } from 'zod';
import { parseEncryptionKey } from '../store/encryption.js';
import { emptyToUndefined, int } from './fields.js';

/** The shared Redis of a fleet: where it is, how its keys are named, and how values are sealed. */
export const redisSchema = z.object({
  REDIS_URL: z
    .preprocess(
      emptyToUndefined,
      z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }).optional(),
    )
    .meta({
      description:
        'Redis shared by a fleet of replicas (token cache, renewal lock, revocations, rate limits); needs `CACHE_ENCRYPTION_KEY`',
      example: 'redis://127.0.0.1:6379/0',
    }),
  REDIS_KEY_PREFIX: z
    .preprocess(
      emptyToUndefined,
      z
        .string()
        .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'must be 1-64 letters, digits or : _ . -')
        .default('token-broker:'),
    )
    .meta({
      description: 'prefix of every Redis key and channel, so several deployments can share one Redis',
      example: 'web:',
    }),
  REDIS_LOCK_TTL_MS: int(200, 120_000, 10_000).meta({
    description: 'lease of the fleet-wide renewal lock, ms (extended while the holder works)',
    example: '10000',
  }),
  CACHE_ENCRYPTION_KEY: z
    .preprocess(
      emptyToUndefined,
      z
        .string()
        .transform((value, ctx) => {
          const key = parseEncryptionKey(value);
          if (!key) {
            ctx.addIssue({ code: 'custom', message: 'must be 32 random bytes as 64 hex digits or base64' });
            return z.NEVER;
          }
          return key;
        })
        .optional(),
    )
    .meta({
      description:
        'encrypts tokens in Redis (AES-256-GCM): 32 random bytes as base64 or hex, the same on every replica. Required with `REDIS_URL`',
      example: '$(openssl rand -base64 32)',
    }),
});

export const redisSecrets = ['CACHE_ENCRYPTION_KEY'] as const;

type RedisEnv = z.infer<typeof redisSchema>;

export interface RedisConfig {
  redisUrl: string | undefined;
  /** Settings of the shared Redis; used only when `redisUrl` is set. */
  redis: {
    keyPrefix: string;
    lockTtlMs: number;
    /** 32 bytes for AES-256-GCM; always set when `redisUrl` is. */
    encryptionKey: Buffer | undefined;
  };
}

export function redisConfig(e: RedisEnv, problems: string[]): RedisConfig {
  // Required outside production too: replicas must share the key, and a silent "no encryption" mode in
  // development is the one that ends up in production.
  if (e.REDIS_URL && !e.CACHE_ENCRYPTION_KEY) {
    problems.push(
      'CACHE_ENCRYPTION_KEY: required when REDIS_URL is set (32 random bytes, e.g. `openssl rand -base64 32`; or CACHE_ENCRYPTION_KEY_FILE)',
    );
  }
  return {
    redisUrl: e.REDIS_URL,
    redis: {
      keyPrefix: e.REDIS_KEY_PREFIX,
      lockTtlMs: e.REDIS_LOCK_TTL_MS,
      encryptionKey: e.CACHE_ENCRYPTION_KEY,
    },
  };
}
