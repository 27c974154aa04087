import type { Clock } from '../clock.js';
import type { Config } from '../config/index.js';
import type { RevocationList } from '../signing/revocations.js';
import type { Logger } from '../telemetry/logger.js';
import { createRotatingCipher } from './encryption.js';
import { createRedisConnections, type RedisConnections, type RedisStatus } from './redisConnection.js';
import { createRedisLock } from './redisLock.js';
import { createRedisRevocations, type FleetRevocationList } from './redisRevocations.js';
import { createRedisStore } from './redisStore.js';
import type { RedisTarget } from './redisTarget.js';
import type { FleetLock, KeyValueStore } from './types.js';

/** Everything a replica shares with the fleet through one Redis. */
export interface RedisBackend {
  connections: RedisConnections;
  /** Prefix of the keys that stand alone (rate limits, DPoP proofs, quota, revocations). */
  prefix: string;
  /** Encrypted token store. */
  store: KeyValueStore;
  /** The fleet-wide renewal lock. */
  lock: FleetLock;
  lockTtlMs: number;
  /** Wraps the local revocation mirror so it follows (and feeds) the fleet's revocations. */
  shareRevocations(local: RevocationList, clockToleranceSeconds: number): FleetRevocationList;
  status(): RedisStatus;
  /**
   * The secrets of a reloaded configuration: tokens are encrypted under the new cache key (the old ones
   * still decrypt), and reconnections authenticate with the new passwords.
   */
  replaceSecrets(target: RedisTarget, settings: Config['redis']): void;
  close(): Promise<void>;
}

export interface ConnectRedisOptions {
  target: RedisTarget;
  settings: Config['redis'];
  clock: Clock;
  logger: Logger;
  /** How long start-up waits for Redis before carrying on in degraded mode. */
  connectTimeoutMs?: number;
}

/**
 * Connects to Redis and builds the shared parts. Start-up waits briefly for the connection, so the first
 * requests already share the fleet's token; a Redis that is down does not stop the broker from starting.
 */
export async function connectRedis({
  target,
  settings,
  clock,
  logger,
  connectTimeoutMs = 3_000,
}: ConnectRedisOptions): Promise<RedisBackend> {
  if (!settings.encryptionKey) throw new Error('CACHE_ENCRYPTION_KEY is required with Redis');
  const connections = createRedisConnections({ target, logger, commandTimeoutMs: settings.commandTimeoutMs });
  await connections.ready(connectTimeoutMs);
  const prefix = settings.keyPrefix;
  // A Cluster runs a script or a transaction only on keys of one hash slot: the token, its lock and its
  // fence are used together, so they share the hash tag `{<prefix>}` (the broker's few tokens fit one node).
  const slotPrefix = target.mode === 'cluster' ? `{${prefix}}` : prefix;
  const cipher = createRotatingCipher(settings.encryptionKey);
  return {
    connections,
    prefix,
    store: createRedisStore({ client: connections.client, prefix: slotPrefix, cipher }),
    lock: createRedisLock({
      client: connections.client,
      prefix: slotPrefix,
      logger,
      ttlMs: settings.lockTtlMs,
    }),
    lockTtlMs: settings.lockTtlMs,
    shareRevocations: (local, clockToleranceSeconds) =>
      createRedisRevocations({ redis: connections, prefix, local, clock, logger, clockToleranceSeconds }),
    status: connections.status,
    replaceSecrets(next, nextSettings) {
      if (nextSettings.encryptionKey) cipher.rotate(nextSettings.encryptionKey);
      connections.setPasswords({
        password: next.password,
        sentinelPassword: next.mode === 'sentinel' ? next.sentinelPassword : undefined,
      });
    },
    close: connections.close,
  };
}
