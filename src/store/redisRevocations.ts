import type { Clock } from '../clock.js';
import type { RevocationList } from '../signing/revocations.js';
import type { Logger } from '../telemetry/logger.js';
import type { RedisConnections } from './redisConnection.js';

export interface RedisRevocationsOptions {
  redis: Pick<RedisConnections, 'client' | 'subscriber' | 'onStatusChange' | 'status'>;
  prefix: string;
  /** The local mirror verification reads; this module keeps it in step with the fleet. */
  local: RevocationList;
  clock: Clock;
  logger: Logger;
  /** How long past `exp` a revoked token is still accepted (the verifier's clock tolerance). */
  clockToleranceSeconds: number;
  /** Full resync from the sorted set, to catch anything pub/sub missed. */
  resyncIntervalMs?: number;
}

/** A RevocationList shared by the fleet; `ready` settles after the first sync (or about 3 s of failures). */
export interface FleetRevocationList extends RevocationList {
  readonly ready: Promise<void>;
}

const messageSeparator = ' ';
/** Write-backs go out in transactions of this many revocations, so a long list does not block Redis. */
const writeBackBatch = 500;
/** Pause before a failed sync is tried again while Redis is up. */
const retryMs = 1_000;
/** Start-up sync: attempts and the pause between them (about 3 s in all, as long as start-up waits for Redis). */
const startAttempts = 12;
const startRetryMs = 250;

/**
 * Revocations across replicas. A revoked `jti` is added to a sorted set (`<prefix>revocations`, scored by
 * `exp`) and published on the channel of the same name; every replica feeds what it hears into its local
 * mirror, so verification stays a synchronous in-memory lookup that never waits on Redis. A periodic and
 * an on-reconnect resync read the set back, covering messages lost while a replica was disconnected.
 *
 * During a Redis outage a revocation takes effect on the replica that received it at once, and the
 * resync when Redis is back writes and publishes it, so the rest of the fleet learns of it then. Redis
 * itself may forget: restarted without persistence, or failed over to a replica
 * that had not yet received the last writes. So every replica keeps each revocation until the token
 * expires, and each resync writes back (and publishes) whatever it holds that the set lacks; a replica
 * started after the loss learns the revocations from the set once any survivor has resynced.
 * A `jti` is a random identifier, not a credential, so it is stored in clear.
 */
export function createRedisRevocations({
  redis,
  prefix,
  local,
  clock,
  logger: parentLogger,
  clockToleranceSeconds,
  resyncIntervalMs = 30_000,
}: RedisRevocationsOptions): FleetRevocationList {
  const logger = parentLogger.child({ component: 'revocations' });
  const { client, subscriber } = redis;
  const key = `${prefix}revocations`;
  let closed = false;

  const onMessage = (channel: string, message: string) => {
    if (channel !== key) return;
    const [jti, expText] = message.split(messageSeparator);
    const exp = Number(expText);
    if (jti && Number.isFinite(exp)) local.remember(jti, exp);
  };
  subscriber.on('message', onMessage);

  async function share(jti: string, exp: number): Promise<void> {
    await client.multi().zadd(key, exp, jti).publish(key, `${jti}${messageSeparator}${exp}`).exec();
  }

  async function resync(): Promise<void> {
    // Scores are `exp` in seconds; anything past exp plus the tolerance can be forgotten fleet-wide.
    const horizon = Math.floor(clock.now() / 1000) - clockToleranceSeconds;
    const [, live] = (await client
      .multi()
      .zremrangebyscore(key, '-inf', `(${horizon}`)
      .zrangebyscore(key, horizon, '+inf', 'WITHSCORES')
      .exec()) ?? [
      [null, 0],
      [null, []],
    ];
    const entries = (live?.[1] ?? []) as string[];
    const shared = new Set<string>();
    for (let index = 0; index + 1 < entries.length; index += 2) {
      shared.add(entries[index] as string);
      local.remember(entries[index] as string, Number(entries[index + 1]));
    }
    const missing = local.entries().filter(([jti]) => !shared.has(jti));
    if (missing.length === 0) return;
    for (let start = 0; start < missing.length; start += writeBackBatch) {
      const transaction = client.multi();
      for (const [jti, exp] of missing.slice(start, start + writeBackBatch)) {
        transaction.zadd(key, exp, jti).publish(key, `${jti}${messageSeparator}${exp}`);
      }
      await transaction.exec();
    }
    logger.warn(
      { count: missing.length },
      'redis had lost revocations this replica holds (restarted empty or failed over): wrote them back',
    );
  }

  let retry: NodeJS.Timeout | undefined;

  /** Whether it synced. A failure while Redis is up (a timed-out command) is retried shortly, not in 30 s. */
  async function sync(reason: string): Promise<boolean> {
    if (closed) return false;
    try {
      // Subscribing again is harmless; it covers a subscription that failed while Redis was away.
      await subscriber.subscribe(key);
      await resync();
      return true;
    } catch (error) {
      logger.debug({ err: error, reason }, 'revocation sync failed; retrying');
      if (!retry && redis.status() === 'ok') {
        retry = setTimeout(() => {
          retry = undefined;
          void sync('retry');
        }, retryMs);
        retry.unref();
      }
      return false;
    }
  }

  // A replica must not accept what the fleet revoked: start-up tries a few times before it settles
  // (counted in attempts, not read from the clock, so a held test clock cannot stall it).
  const ready = (async () => {
    for (let attempt = 0; attempt < startAttempts && !closed; attempt += 1) {
      // With Redis away, the sync on its return loads the set; start-up does not wait for that.
      if ((await sync('start')) || redis.status() !== 'ok') return;
      await new Promise((resolve) => setTimeout(resolve, startRetryMs).unref());
    }
  })();
  const stopListening = redis.onStatusChange((status) => {
    if (status === 'ok') void sync('reconnect');
  });
  const timer = setInterval(() => void sync('interval'), resyncIntervalMs);
  timer.unref();

  return {
    ready,
    async revoke(jti, exp) {
      local.remember(jti, exp);
      try {
        await share(jti, exp);
      } catch (error) {
        logger.warn(
          { err: error },
          'revocation not shared (redis unreachable): effective on this replica now, fleet-wide when redis returns',
        );
      }
    },
    remember: local.remember,
    isRevoked: local.isRevoked,
    onRevoked: local.onRevoked,
    size: local.size,
    entries: local.entries,
    close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(retry);
      stopListening();
      subscriber.off('message', onMessage);
      local.close();
    },
  };
}
