import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { ipKeyGenerator } from 'express-rate-limit';
import { canonicalIp } from '../caller/ip.js';
import type { Clock } from '../clock.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import { rawProblem } from './problem.js';

/** Which cap refused a connection. */
export type ConnectionCap = 'per_network' | 'total';

/** What a refused connection is told before it is closed: no request was read, so no request id. */
const refusalResponse = (detail: string) =>
  rawProblem(new BrokerError('rate_limited', { detail, headers: { 'Retry-After': '1' } }));
const refusals: Record<ConnectionCap, string> = {
  per_network: refusalResponse('too many open connections from this network; reuse or close some'),
  total: refusalResponse('the broker holds as many connections as it may; retry shortly'),
};

export interface ConnectionCapsOptions {
  /** Most open connections from one network: an IPv4 address, or an IPv6 `/56` (0: no cap). */
  maxPerNetwork: number;
  /** Most open connections in all (0: no cap). */
  maxTotal: number;
  /** `IDLE_SOCKET_TIMEOUT_MS`: how long a connection may wait without a request's headers. */
  idleTimeoutMs: number;
  logger: Logger;
  clock: Clock;
  /** Called on every refusal (the metric). */
  onRefused?: (cap: ConnectionCap) => void;
}

/**
 * The open-connection caps, for every socket the broker accepts: the HTTP server's (`capServer`), and any
 * other a module takes over, such as an upgraded WebSocket's, which stays counted as the connection it
 * came on. `admit` counts a socket until it closes, or answers it a 429 problem and closes it.
 */
export interface ConnectionCaps {
  admit(socket: Socket): boolean;
  /** Open connections now, in all. */
  open(): number;
  /** How long a connection may wait without a request's headers (`limitServer` applies it). */
  idleTimeoutMs: number;
}

/** The same grouping as the rate limits: a client with a whole IPv6 `/56` is one network. */
const networkOf = (address: string | undefined) => ipKeyGenerator(canonicalIp(address ?? '') ?? '', 56);

/** Lines about refusals, at most one a minute per cap, each with the count since the last. */
const logIntervalMs = 60_000;

export function createConnectionCaps({
  maxPerNetwork,
  maxTotal,
  idleTimeoutMs,
  logger,
  clock,
  onRefused,
}: ConnectionCapsOptions): ConnectionCaps {
  const open = new Map<string, number>();
  let total = 0;
  const refused: Record<ConnectionCap, { since: number; loggedAt: number }> = {
    per_network: { since: 0, loggedAt: Number.NEGATIVE_INFINITY },
    total: { since: 0, loggedAt: Number.NEGATIVE_INFINITY },
  };

  function refuse(socket: Socket, cap: ConnectionCap): false {
    onRefused?.(cap);
    const seen = refused[cap];
    seen.since += 1;
    const now = clock.now();
    if (now - seen.loggedAt >= logIntervalMs) {
      logger.warn(
        { cap, refused: seen.since, max: cap === 'total' ? maxTotal : maxPerNetwork, open: total },
        cap === 'total'
          ? 'MAX_CONNECTIONS reached: new connections are refused'
          : 'a network reached MAX_CONNECTIONS_PER_IP: its further connections are refused',
      );
      seen.loggedAt = now;
      seen.since = 0;
    }
    socket.end(refusals[cap]);
    socket.destroySoon();
    return false;
  }

  return {
    admit(socket) {
      if (maxTotal > 0 && total >= maxTotal) return refuse(socket, 'total');
      const network = maxPerNetwork > 0 ? networkOf(socket.remoteAddress) : '';
      const count = (open.get(network) ?? 0) + 1;
      if (maxPerNetwork > 0 && count > maxPerNetwork) return refuse(socket, 'per_network');
      open.set(network, count);
      total += 1;
      socket.once('close', () => {
        total -= 1;
        const left = (open.get(network) ?? 1) - 1;
        if (left <= 0) open.delete(network);
        else open.set(network, left);
      });
      return true;
    },
    open: () => total,
    idleTimeoutMs,
  };
}

/**
 * For `createServer`: how often Node looks for connections past their headers timeout (30 s by default,
 * which let a silent connection live 60 to 90 s). Node reads it once, when the server starts listening,
 * which the test harness does before it has a configuration: hence one value, not one per setting.
 */
export const serverOptions = { connectionsCheckingInterval: 1_000 } as const;

/**
 * Applies the caps to every connection the server accepts, and the idle timeout: a connection that has
 * not sent a request's complete headers `idleTimeoutMs` after opening, or after its first byte of a
 * later request, is answered `408 request_timeout` (clientErrors.ts) and closed at the next check (`serverOptions`); a keep-alive
 * connection idle for as long after an answer is closed (plus Node's own second of grace, so a client
 * told `Keep-Alive: timeout` closes first). Node stops the headers clock once a request's headers are
 * in, so it never cuts an upload (`BODY_IDLE_TIMEOUT_MS` does) or a slow answer (`UPSTREAM_TIMEOUT_MS`,
 * `UPSTREAM_API_TIMEOUT_MS`). Node checks from a timer, which runs before pending reads: an event-loop
 * stall longer than the timeout can cut a connection whose headers wait unread, so keep it well above
 * the longest stall (tests with short values see this on a loaded machine).
 */
export function limitServer(server: Server, caps: ConnectionCaps): void {
  server.headersTimeout = caps.idleTimeoutMs;
  server.keepAliveTimeout = caps.idleTimeoutMs;
  server.on('connection', (socket: Socket) => {
    caps.admit(socket);
  });
}

/** Descriptors kept for the API and token endpoint pools, Redis, files and the metrics port. */
const reservedShare = 0.25;
const reservedAtLeast = 128;

/**
 * The default of `MAX_CONNECTIONS`: the process's open-file limit (the soft `RLIMIT_NOFILE`, from
 * `/proc/self/limits` on Linux; 1,024 where it cannot be read) less a quarter, at least 128, for the
 * outbound pools and the rest, so the broker refuses with a 429 before `accept` fails with EMFILE.
 */
export function defaultMaxConnections(
  readLimits: () => string = () => readFileSync('/proc/self/limits', 'utf8'),
): number {
  let limit = 1_024;
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(readLimits())?.[1];
    if (soft !== undefined) limit = Number(soft);
  } catch {
    // Not Linux: the common default.
  }
  return Math.max(16, limit - Math.max(reservedAtLeast, Math.floor(limit * reservedShare)));
}
