import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { KeyValueStore } from '../store/types.js';
import type { Logger } from '../telemetry/logger.js';
import { inSpan, spanAttributes, spanNames, type Tracer } from '../telemetry/spans.js';
import type { UpstreamToken } from './types.js';

const storedTokenSchema = z.object({
  accessToken: z.string().min(1),
  tokenType: z.string().min(1),
  expiresAt: z.number().finite(),
  obtainedAt: z.number().finite(),
  refreshToken: z.string().min(1).optional(),
  scope: z.string().optional(),
});

/**
 * Upstream tokens persisted in a KeyValueStore as JSON, so a restarted broker (and, with Redis, every
 * replica) picks up a token instead of asking the upstream again. A broken store is logged and treated
 * as empty: the cache then simply asks the upstream.
 */
export interface TokenStore {
  load(key: string): Promise<UpstreamToken | undefined>;
  /**
   * Keeps the token for the rest of its lifetime. With a `fence` (the fleet lock's lease), the write is
   * refused when a newer lease was granted meanwhile, so a stale holder cannot replace a newer token.
   */
  save(key: string, token: UpstreamToken, fence?: number): Promise<void>;
  /** Deletes the stored token only if it is still `accessToken`, so a newer one survives. */
  removeIf(key: string, accessToken: string): Promise<void>;
}

export function createTokenStore({
  store,
  clock,
  logger,
  tracer,
}: {
  store: KeyValueStore;
  clock: Clock;
  logger: Logger;
  /** With tracing on: a span per fenced write, with its fence and whether the store took it. */
  tracer?: Tracer | undefined;
}): TokenStore {
  async function load(key: string): Promise<UpstreamToken | undefined> {
    let raw: string | undefined;
    try {
      raw = await store.get(key);
    } catch (error) {
      logger.warn({ err: error }, 'token store read failed; asking the upstream instead');
      return undefined;
    }
    return raw === undefined ? undefined : parse(raw);
  }

  function parse(raw: string): UpstreamToken | undefined {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      // V8's JSON.parse message quotes the input, which holds a token: log neither.
      parsed = undefined;
    }
    const result = storedTokenSchema.safeParse(parsed);
    if (!result.success) {
      logger.warn('token store holds an unreadable entry; ignoring it');
      return undefined;
    }
    return result.data;
  }

  /** A write the store refuses when a lease newer than `fence` was granted (redisStore.ts). */
  function writeFenced(
    setFenced: NonNullable<KeyValueStore['setFenced']>,
    key: string,
    token: UpstreamToken,
    ttlMs: number,
    fence: number,
  ): Promise<boolean> {
    const write = () => setFenced(key, JSON.stringify(token), ttlMs, fence);
    if (!tracer) return write();
    return inSpan(tracer, spanNames.fencedWrite, { [spanAttributes.fence]: fence }, async (span) => {
      const accepted = await write();
      span.setAttribute(spanAttributes.fenceAccepted, accepted);
      return accepted;
    });
  }

  return {
    load,
    async save(key, token, fence) {
      const ttlMs = token.expiresAt - clock.now();
      if (ttlMs <= 0) return;
      try {
        if (fence === undefined || !store.setFenced) {
          await store.set(key, JSON.stringify(token), ttlMs);
        } else if (!(await writeFenced(store.setFenced.bind(store), key, token, ttlMs, fence))) {
          logger.warn(
            { fence },
            'a newer renewal lease exists; its token is kept in the store, not this one',
          );
        }
      } catch (error) {
        logger.warn({ err: error }, 'token store write failed; the token is kept in memory only');
      }
    },
    async removeIf(key, accessToken) {
      let raw: string | undefined;
      try {
        raw = await store.get(key);
      } catch (error) {
        logger.warn({ err: error }, 'token store read failed; the refused token expires there by itself');
        return;
      }
      if (raw === undefined || parse(raw)?.accessToken !== accessToken) return;
      try {
        // A shared store compares and deletes atomically: a token another replica wrote in between survives.
        if (store.deleteIf) await store.deleteIf(key, raw);
        else await store.delete(key);
      } catch (error) {
        logger.warn({ err: error }, 'token store delete failed');
      }
    },
  };
}
