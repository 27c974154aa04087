import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../../telemetry/logger.js';

/** What a refused connection is told before it is closed: no request was read, so no request id. */
const refusal = JSON.stringify({
  type: 'urn:token-broker:problem:rate_limited',
  title: 'Too many requests',
  status: 429,
  code: 'rate_limited',
  detail: 'too many open connections from this address; reuse or close some',
});
const refusalResponse = [
  'HTTP/1.1 429 Too Many Requests',
  'Content-Type: application/problem+json',
  'Cache-Control: no-store',
  'Retry-After: 1',
  'Connection: close',
  `Content-Length: ${Buffer.byteLength(refusal)}`,
  '',
  refusal,
].join('\r\n');

/**
 * Caps the connections one peer address holds open at once, so a single client cannot take every socket
 * (and the file descriptors behind them) with idle or trickling connections. The peer is the socket's
 * address: nothing of the request is read yet, so `TRUST_PROXY` plays no part, and behind a reverse
 * proxy the cap applies to the proxy. A refused connection gets a 429 problem and is closed.
 */
export function limitConnectionsPerIp(server: Server, max: number, logger: Logger): void {
  if (max <= 0) return;
  const open = new Map<string, number>();
  let warned = false;
  server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress ?? '';
    const count = (open.get(peer) ?? 0) + 1;
    if (count > max) {
      if (!warned) {
        warned = true;
        logger.warn({ max }, 'a peer reached MAX_CONNECTIONS_PER_IP; its further connections are refused');
      }
      socket.end(refusalResponse);
      socket.destroySoon();
      return;
    }
    open.set(peer, count);
    socket.once('close', () => {
      const left = (open.get(peer) ?? 1) - 1;
      if (left <= 0) open.delete(peer);
      else open.set(peer, left);
    });
  });
}
