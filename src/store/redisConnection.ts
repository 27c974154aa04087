import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../telemetry/logger.js';
import { describeRedisTarget, type RedisTarget } from './redisTarget.js';

/** A connection to one server or Sentinel-watched master (`Redis`), or to a Cluster. */
export type RedisClient = Redis | Cluster;

/** `ok` while every Redis connection is ready; `degraded` while any is not (local state only). */
export type RedisStatus = 'ok' | 'degraded';

export interface RedisConnections {
  /** Commands: the token store, the lock, revocations, rate-limit counters. */
  client: RedisClient;
  /** Pub/sub only: a subscribed connection may not run other commands. */
  subscriber: RedisClient;
  status(): RedisStatus;
  /** Called on every ok/degraded transition (metrics); returns a function that unsubscribes. */
  onStatusChange(listener: (status: RedisStatus) => void): () => void;
  /**
   * The passwords of a reloaded configuration: the open connections stay as they are (authenticated
   * once, they serve on), and every reconnection from now on authenticates with these.
   */
  setPasswords(passwords: { password: string | undefined; sentinelPassword: string | undefined }): void;
  /** Resolves once both connections are ready, or after `timeoutMs` (start-up then continues degraded). */
  ready(timeoutMs: number): Promise<RedisStatus>;
  /** The last connection error's code and message (never a credential), for `check-config --probe`. */
  cause(): string | undefined;
  close(): Promise<void>;
}

export interface RedisConnectionOptions {
  target: RedisTarget;
  logger: Logger;
  /** Longest pause between reconnection attempts. */
  maxReconnectDelayMs?: number;
  /** A command that gets no answer in this time fails, so a black-holed Redis cannot stall a request. */
  commandTimeoutMs?: number;
}

/** One ioredis client for the target: the only place that knows the three modes apart. */
export function createRedisClient(target: RedisTarget, options: RedisOptions): RedisClient {
  const auth: RedisOptions = {
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
    ...(target.tls ? { tls: target.tls.ca ? { ca: target.tls.ca } : {} } : {}),
  };
  switch (target.mode) {
    case 'single':
      return new Redis(target.url, { ...options, ...auth });
    case 'sentinel':
      return new Redis({
        ...options,
        ...auth,
        sentinels: target.sentinels,
        name: target.name,
        ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
        ...(target.tls ? { enableTLSForSentinelMode: true, sentinelTLS: auth.tls ?? {} } : {}),
      });
    case 'cluster':
      return new Cluster(target.nodes, {
        redisOptions: { ...options, ...auth },
        enableOfflineQueue: false,
        clusterRetryStrategy: options.retryStrategy ?? (() => null),
        // A moved slot or a failover is retried shortly instead of failing the command at once.
        retryDelayOnFailover: 100,
        retryDelayOnClusterDown: 100,
        slotsRefreshTimeout: options.connectTimeout ?? 2_000,
      });
  }
}

/** Errors that no reconnection heals: an unknown host, a refused password or user. */
const misconfigured = /ENOTFOUND|EAI_AGAIN|WRONGPASS|NOAUTH|NOPERM|invalid password/i;

/**
 * Two ioredis connections tuned to fail fast: while Redis is away, commands error at once instead of
 * queueing (`enableOfflineQueue: false`), each is retried at most once, and the broker carries on from
 * local state (degraded mode). ioredis reconnects by itself; every transition is logged once.
 */
export function createRedisConnections({
  target,
  logger: parentLogger,
  maxReconnectDelayMs = 1_000,
  commandTimeoutMs = 1_000,
}: RedisConnectionOptions): RedisConnections {
  const logger = parentLogger.child({ component: 'redis' });
  const options: RedisOptions = {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 2_000,
    // Capped, so a Redis that comes back is found within `maxReconnectDelayMs`.
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 10), maxReconnectDelayMs),
    // A replica-promoted or read-only Redis answers READONLY: reconnect to find the writable one.
    reconnectOnError: (error: Error) => error.message.startsWith('READONLY'),
  };
  const client = createRedisClient(target, { ...options, connectionName: 'token-broker' });
  if (client instanceof Redis) reconnectOnTimeout(client);
  const subscriber = createRedisClient(target, { ...options, connectionName: 'token-broker-sub' });
  const listeners = new Set<(status: RedisStatus) => void>();
  // Where, and why not: what an operator needs to tell a wrong REDIS_URL from a Redis that is down.
  const where = describeRedisTarget(target);
  let cause: string | undefined;
  let current: RedisStatus = 'degraded';
  let everReady = false;
  let closing = false;

  function update(): void {
    if (closing) return;
    const next: RedisStatus = client.status === 'ready' && subscriber.status === 'ready' ? 'ok' : 'degraded';
    if (next === current) return;
    current = next;
    if (next === 'ok') {
      logger.info(everReady ? 'redis is back: sharing state with the fleet again' : 'redis connected');
      everReady = true;
    } else {
      logger.warn(
        { redis: where, cause },
        'redis unreachable: degraded mode, serving from local state until it returns',
      );
    }
    for (const listener of listeners) listener(next);
  }

  for (const connection of [client, subscriber]) {
    connection.on('ready', update);
    connection.on('close', update);
    connection.on('end', update);
    // Without a listener, ioredis reports errors as unhandled; the transition is what gets logged.
    connection.on('error', (error: Error) => {
      // The code and message only: ioredis puts the failed command on the error, and for HELLO or
      // AUTH its arguments are the username and password.
      const first = `${(error as NodeJS.ErrnoException).code ?? ''} ${error.message.split('\n')[0]}`.trim();
      logger.debug({ cause: first }, 'redis connection error');
      if (first !== cause && misconfigured.test(first)) {
        // Retrying cannot fix a wrong host or password: say so once per distinct error, loudly.
        logger.error(
          { redis: where, cause: first },
          'redis refuses the broker or cannot be found: check REDIS_* settings',
        );
      }
      cause = first;
      update();
    });
  }

  return {
    client,
    subscriber,
    status: () => current,
    cause: () => cause,
    setPasswords({ password, sentinelPassword }) {
      for (const connection of [client, subscriber]) {
        // ioredis reads its options again at every (re)connection; a Cluster hands `redisOptions` to each node.
        const options = connection instanceof Cluster ? connection.options.redisOptions : connection.options;
        // Unset: a password in REDIS_URL, parsed into the options, stays.
        if (options && password !== undefined) options.password = password;
        if (!(connection instanceof Cluster) && sentinelPassword !== undefined) {
          connection.options.sentinelPassword = sentinelPassword;
        }
      }
    },
    onStatusChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ready(timeoutMs) {
      if (current === 'ok') return Promise.resolve(current);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          listeners.delete(onChange);
          if (current !== 'ok' && !everReady)
            logger.warn(
              { timeoutMs, redis: where, cause: cause ?? `no answer within ${timeoutMs} ms` },
              `redis not reachable at start-up (${where}): starting in degraded mode`,
            );
          resolve(current);
        }, timeoutMs);
        timer.unref();
        const onChange = (status: RedisStatus) => {
          if (status !== 'ok') return;
          clearTimeout(timer);
          listeners.delete(onChange);
          resolve(status);
        };
        listeners.add(onChange);
      });
    },
    async close() {
      closing = true;
      listeners.clear();
      await Promise.all(
        [client, subscriber].map((connection) =>
          connection.status === 'ready'
            ? connection.quit().catch(() => connection.disconnect())
            : connection.disconnect(),
        ),
      );
    },
  };
}

/**
 * A command that timed out means a stalled server (a paused process, a black-holed host): the
 * connection is dropped and reconnected at once, and until the server answers the reconnection's ready
 * check every later command fails at once (`enableOfflineQueue: false`) instead of waiting out a timeout
 * of its own. A request that meets a stall so waits one command timeout in all, not one per step (rate
 * limit, token store, lock, write-back). A Cluster's node connections are its own, and keep one timeout
 * per command.
 */
function reconnectOnTimeout(connection: Redis): void {
  const send = connection.sendCommand.bind(connection);
  connection.sendCommand = (command, stream) => {
    const sent = send(command, stream);
    command.promise.catch((error: unknown) => {
      if (error instanceof Error && error.message === 'Command timed out' && connection.status === 'ready') {
        connection.disconnect(true);
      }
    });
    return sent;
  };
}
