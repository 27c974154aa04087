import { z } from 'zod';
import { parseEncryptionKey } from '../store/encryption.js';
import { hostPortList, type RedisTarget, resolveRedisTarget } from '../store/redisTarget.js';
import { emptyToUndefined, int, optionalString } from './fields.js';

/** The shared Redis of a fleet: where it is (one server, Sentinel or Cluster), how its keys are named, and how values are sealed. */
export const redisSchema = z.object({
  REDIS_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^rediss?$/ }).optional()),
  REDIS_SENTINELS: hostPortList,
  REDIS_SENTINEL_NAME: optionalString,
  REDIS_SENTINEL_PASSWORD: optionalString,
  REDIS_CLUSTER_NODES: hostPortList,
  REDIS_USERNAME: optionalString,
  REDIS_PASSWORD: optionalString,
  REDIS_TLS: z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')),
  REDIS_TLS_CA_FILE: optionalString,
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000, 1_000),
  REDIS_KEY_PREFIX: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'must be 1-64 letters, digits or : _ . -')
      .default('token-broker:'),
  ),
  REDIS_LOCK_TTL_MS: int(200, 120_000, 10_000),
  CACHE_ENCRYPTION_KEY: z.preprocess(
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
  ),
});

export const redisSecrets = ['CACHE_ENCRYPTION_KEY', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD'] as const;

type RedisEnv = z.infer<typeof redisSchema>;

export interface RedisConfig {
  /** Where the shared Redis is (single, Sentinel or Cluster); undefined: no Redis, state per process. */
  redisTarget: RedisTarget | undefined;
  /** Settings of the shared Redis; used only when `redisTarget` is set. */
  redis: {
    keyPrefix: string;
    lockTtlMs: number;
    /** A command unanswered this long fails, so a stalled Redis cannot hold a request. */
    commandTimeoutMs: number;
    /** 32 bytes for AES-256-GCM; always set when `redisTarget` is. */
    encryptionKey: Buffer | undefined;
  };
}

export function redisConfig(
  e: RedisEnv,
  readFile: (path: string) => string,
  problems: string[],
): RedisConfig {
  const { target, problems: targetProblems } = resolveRedisTarget(e, readFile);
  problems.push(...targetProblems);
  // Required outside production too: replicas must share the key, and a silent "no encryption" mode in
  // development is the one that ends up in production.
  const wanted = e.REDIS_URL || e.REDIS_SENTINELS.length > 0 || e.REDIS_CLUSTER_NODES.length > 0;
  if (wanted && !e.CACHE_ENCRYPTION_KEY) {
    problems.push(
      'CACHE_ENCRYPTION_KEY: required when Redis is configured (32 random bytes, e.g. `openssl rand -base64 32`; or CACHE_ENCRYPTION_KEY_FILE)',
    );
  }
  return {
    redisTarget: target,
    redis: {
      keyPrefix: e.REDIS_KEY_PREFIX,
      lockTtlMs: e.REDIS_LOCK_TTL_MS,
      commandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
      encryptionKey: e.CACHE_ENCRYPTION_KEY,
    },
  };
}
