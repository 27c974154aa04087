import type { Dispatcher } from 'undici';
import type { TlsClientIdentity } from './tlsClientIdentity.js';

export interface TlsDispatchers<D extends Dispatcher> {
  /**
   * The dispatcher whose connections present `identity`, opened on first use. Call it right before the
   * request, in the same tick: a dispatcher pushed out by newer identities is closing.
   */
  for(identity: TlsClientIdentity): D;
  close(): Promise<void>;
}

/**
 * Identities kept open: the newest and the one before. A request that took its token just before the
 * cache renewed it with a new certificate still finds the old one's connections, rather than reopening
 * them and pushing the new one out.
 */
const keptGenerations = 2;

/**
 * One dispatcher per generation of the client certificate. A TLS connection keeps the certificate it
 * was opened with, so a rotated certificate needs new connections: the next request after a rotation
 * gets a new dispatcher, and the oldest one is closed gracefully (undici lets what it has in flight finish).
 */
export function createTlsDispatchers<D extends Dispatcher>(
  open: (identity: TlsClientIdentity) => D,
): TlsDispatchers<D> {
  const entries: { generation: string; dispatcher: D }[] = [];
  return {
    for(identity) {
      const held = entries.find((entry) => entry.generation === identity.generation);
      if (held) return held.dispatcher;
      const dispatcher = open(identity);
      entries.push({ generation: identity.generation, dispatcher });
      for (const old of entries.splice(0, Math.max(0, entries.length - keptGenerations))) {
        // Nobody awaits this close: its requests end on their own deadlines.
        old.dispatcher.close().catch(() => undefined);
      }
      return dispatcher;
    },
    async close() {
      await Promise.all(entries.splice(0).map((entry) => entry.dispatcher.close()));
    },
  };
}
