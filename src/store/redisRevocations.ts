import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { RevocationList } from '../signing/revocations.js';
import type { RedisConnections } from './redisConnection.js';

export interface RedisRevocationsOptions {
  redis: Pick<RedisConnections, 'client' | 'subscriber' | 'onStatusChange'>;
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

/** A RevocationList shared by the fleet; `ready` settles after the first sync (or its failure). */
export interface FleetRevocationList extends RevocationList {
  readonly ready: Promise<void>;
}

const messageSeparator = ' ';

/**
 * Revocations across replicas. A revoked `jti` is added to a sorted set (`<prefix>revocations`, scored by
 * `exp`) and published on the channel of the same name; every replica feeds what it hears into its local
 * mirror, so verification stays a synchronous in-memory lookup that never waits on Redis. A periodic and
 * an on-reconnect resync read the set back, covering messages lost while a replica was disconnected.
 *
 * During a Redis outage a revocation takes effect on the replica that received it at once; it is kept
 * in a pending list and written and published again as soon as Redis is back, so the rest of the fleet
 * learns of it then. A `jti` is a random identifier, not a credential, so it is stored in clear.
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
  const pending = new Map<string, number>();
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

  async function flushPending(): Promise<void> {
    for (const [jti, exp] of pending) {
      await share(jti, exp);
      pending.delete(jti);
    }
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
    for (let index = 0; index + 1 < entries.length; index += 2) {
      local.remember(entries[index] as string, Number(entries[index + 1]));
    }
  }

  async function sync(reason: string): Promise<void> {
    if (closed) return;
    try {
      // Subscribing again is harmless; it covers a subscription that failed while Redis was away.
      await subscriber.subscribe(key);
      await flushPending();
      await resync();
    } catch (error) {
      logger.debug({ err: error, reason }, 'revocation sync failed; retrying when redis is back');
    }
  }

  const ready = sync('start');
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
        pending.set(jti, exp);
        logger.warn(
          { err: error },
          'revocation not shared (redis unreachable): effective on this replica now, fleet-wide when redis returns',
        );
      }
    },
    remember: local.remember,
    isRevoked: local.isRevoked,
    size: local.size,
    close() {
      closed = true;
      clearInterval(timer);
      stopListening();
      subscriber.off('message', onMessage);
      local.close();
    },
  };
}
