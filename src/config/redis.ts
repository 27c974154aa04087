import { z } from 'zod';
import { parseEncryptionKey } from '../store/encryption.js';
import { hostPortList, type RedisTarget, resolveRedisTarget } from '../store/redisTarget.js';
import { emptyToUndefined, int, optionalString } from './fields.js';

/** The shared Redis of a fleet: where it is (one server, Sentinel or Cluster), how its keys are named, and how values are sealed. */
export const redisSchema = z.object({
  REDIS_URL: z
    .preprocess(
      emptyToUndefined,
      z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }).optional(),
    )
    .meta({
      description:
        'one Redis shared by a fleet of replicas (token cache, renewal lock, revocations, rate limits); needs `CACHE_ENCRYPTION_KEY`',
      example: 'redis://127.0.0.1:6379/0',
    }),
  REDIS_SENTINELS: hostPortList.meta({
    description:
      'Redis Sentinel instead of `REDIS_URL`: the sentinels as `host:port,host:port`, with `REDIS_SENTINEL_NAME`',
    example: '10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379',
  }),
  REDIS_SENTINEL_NAME: optionalString.meta({
    description: 'the name of the master the sentinels monitor (their `sentinel monitor <name>`)',
    example: 'mymaster',
  }),
  REDIS_SENTINEL_PASSWORD: optionalString.meta({
    description: 'password of the sentinels themselves, if they require one',
    example: 'the-sentinel-password',
  }),
  REDIS_CLUSTER_NODES: hostPortList.meta({
    description:
      'Redis Cluster instead: seed nodes as `host:port,...`; exactly one of `REDIS_URL`, `REDIS_SENTINELS`, `REDIS_CLUSTER_NODES`',
    example: '10.0.0.5:6379,10.0.0.6:6379,10.0.0.7:6379',
  }),
  REDIS_USERNAME: optionalString.meta({
    description: 'ACL user of the Redis data nodes (with `REDIS_URL` it may be in the URL instead)',
    example: 'broker',
  }),
  REDIS_PASSWORD: optionalString.meta({
    description: 'password of the Redis data nodes (with `REDIS_URL` it may be in the URL instead)',
    example: 'the-redis-password',
  }),
  REDIS_TLS: z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')).meta({
    description:
      '`true`: TLS to the Sentinel or Cluster nodes and the sentinels (`rediss://` does it for `REDIS_URL`)',
    example: 'true',
  }),
  REDIS_TLS_CA_FILE: optionalString.meta({
    description: 'a PEM file of CA certificates replacing the system roots for Redis TLS',
    example: '/etc/ssl/redis-ca.pem',
  }),
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000, 1_000).meta({
    description: 'a Redis command unanswered this long fails, so a stalled Redis never holds a request, ms',
    example: '1000',
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
        'encrypts tokens in Redis (AES-256-GCM): 32 random bytes as base64 or hex, the same on every replica. Required with Redis',
      example: '$(openssl rand -base64 32)',
    }),
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
