import type { Clock } from '../clock.js';
import { BrokerError } from '../errors.js';
import type { ClientTokenClaims } from '../signing/clientTokens.js';
import type { RevocationList } from '../signing/revocations.js';

/**
 * Close codes the broker sends on a proxied WebSocket (RFC 6455 §7.4.2 leaves 4000–4999 to
 * applications; documented in docs/websockets.md). They echo the HTTP status the token would now get.
 */
export const brokerCloseCodes = {
  /** The client token expired: open a new socket with a new token. */
  expired: 4401,
  /** The client token was revoked somewhere in the fleet. */
  revoked: 4403,
  /** The broker is shutting down (RFC 6455 §7.4.1). */
  goingAway: 1001,
} as const;

/** Closes one socket (the client side, and the API side with it). */
export type CloseSocket = (code: number, reason: string) => void;

/** A place held for one socket of a client token, from its handshake until it closes. */
export interface SessionSlot {
  /** The socket is open: from now on expiry, revocation and shutdown close it through `close`. */
  open(close: CloseSocket): void;
  /** The handshake failed or the socket closed; may be called more than once. */
  release(): void;
}

export interface WebSocketSessions {
  /**
   * Holds a place for a socket of this token, counted before the API is even called so that handshakes
   * in flight cannot pass the cap together.
   * @throws BrokerError `rate_limited` when the token holds `maxPerToken` sockets already
   */
  reserve(claims: Pick<ClientTokenClaims, 'jti' | 'exp'>): SessionSlot;
  /** Sockets open or being opened. */
  size(): number;
  /** Closes every open socket with `1001 going away` (shutdown). */
  closeAll(): void;
  /** Stops listening for revocations and stops the expiry check. */
  close(): void;
}

export interface WebSocketSessionsOptions {
  clock: Clock;
  revocations: RevocationList;
  /** Seconds past `exp` the proxy still accepts a token: the socket closes when a call would be refused. */
  clockToleranceSeconds: number;
  /** `PROXY_WEBSOCKETS_PER_TOKEN`. */
  maxPerToken: number;
  /** How often open sockets are checked against the clock (default 250 ms). */
  checkIntervalMs?: number;
}

interface Slot {
  /** Set once the socket is open. */
  close: CloseSocket | undefined;
  closing: boolean;
}

interface TokenSockets {
  /** Milliseconds since the epoch from which the proxy refuses the token. */
  deadline: number;
  slots: Set<Slot>;
}

/**
 * The proxied WebSockets of this replica, by client token (`jti`). A revocation anywhere in the fleet
 * reaches every replica's revocation list (redisRevocations.ts), whose one `onRevoked` listener here
 * closes the token's sockets at once; nothing is polled per socket. Expiry is read from the injected
 * clock by one check for all sockets, running only while some are open.
 */
export function createWebSocketSessions({
  clock,
  revocations,
  clockToleranceSeconds,
  maxPerToken,
  checkIntervalMs = 250,
}: WebSocketSessionsOptions): WebSocketSessions {
  const byToken = new Map<string, TokenSockets>();
  let timer: NodeJS.Timeout | undefined;
  let count = 0;

  const shut = (slot: Slot, code: number, reason: string) => {
    if (slot.closing || !slot.close) return;
    slot.closing = true;
    slot.close(code, reason);
  };

  const closeToken = (sockets: TokenSockets, code: number, reason: string) => {
    for (const slot of sockets.slots) shut(slot, code, reason);
  };

  const checkExpiry = () => {
    const now = clock.now();
    for (const sockets of byToken.values()) {
      if (now >= sockets.deadline) closeToken(sockets, brokerCloseCodes.expired, 'client token expired');
    }
  };

  const stopListening = revocations.onRevoked((jti) => {
    const sockets = byToken.get(jti);
    if (sockets) closeToken(sockets, brokerCloseCodes.revoked, 'client token revoked');
  });

  return {
    reserve({ jti, exp }) {
      const sockets = byToken.get(jti) ?? {
        deadline: (exp + clockToleranceSeconds) * 1000,
        slots: new Set(),
      };
      if (sockets.slots.size >= maxPerToken) {
        throw new BrokerError('rate_limited', {
          detail: `this client token already holds ${maxPerToken} WebSockets (PROXY_WEBSOCKETS_PER_TOKEN); close one first`,
          headers: { 'Retry-After': '1' },
        });
      }
      byToken.set(jti, sockets);
      const slot: Slot = { close: undefined, closing: false };
      sockets.slots.add(slot);
      count += 1;
      let released = false;
      return {
        open(close) {
          if (released) return;
          slot.close = close;
          timer ??= setInterval(checkExpiry, checkIntervalMs).unref();
          // Revoked or expired while the API's handshake was under way: no listener saw it for this socket.
          if (revocations.isRevoked(jti)) shut(slot, brokerCloseCodes.revoked, 'client token revoked');
          else if (clock.now() >= sockets.deadline)
            shut(slot, brokerCloseCodes.expired, 'client token expired');
        },
        release() {
          if (released) return;
          released = true;
          count -= 1;
          sockets.slots.delete(slot);
          if (sockets.slots.size === 0) byToken.delete(jti);
          if (byToken.size === 0) {
            clearInterval(timer);
            timer = undefined;
          }
        },
      };
    },
    size: () => count,
    closeAll() {
      for (const sockets of byToken.values())
        closeToken(sockets, brokerCloseCodes.goingAway, 'broker shutting down');
    },
    close() {
      stopListening();
      clearInterval(timer);
      timer = undefined;
    },
  };
}
