import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { WebSocket } from 'ws';

/** The subprotocols a page offers for `token`, then its own. */
export const offerFor = (token: string, ...own: string[]) => [
  'token-broker',
  `token-broker.bearer.${token}`,
  ...own,
];

/** A WebSocket that opened, with what the broker answered. */
export interface OpenSocket {
  ws: WebSocket;
  protocol: string;
  /** Settles with the close the client saw, and when (`performance.now()`). */
  closed: Promise<{ code: number; reason: string; at: number }>;
}

/**
 * Opens a WebSocket through the broker as a Node client (`ws`, no compression), with `Origin` set as a
 * browser would. Rejects when the handshake is refused (use `handshake()` to read a refusal).
 */
export function openSocket(
  url: string,
  path: string,
  protocols: string[],
  headers: Record<string, string> = {},
): Promise<OpenSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${path}`, protocols, {
    perMessageDeflate: false,
    headers,
  });
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: performance.now() }));
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, protocol: ws.protocol, closed }));
    ws.once('error', reject);
  });
}

/** The next message a socket receives. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) =>
    ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })),
  );
}

/** What the broker answered a handshake: `101` or a refusal with its body. */
export interface HandshakeAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Sends a WebSocket handshake with raw headers (nothing validated on the client side, so a malformed
 * `Sec-WebSocket-Protocol` reaches the broker as written) and reads the answer. A `101` is closed at once.
 */
export function handshake(
  url: string,
  path: string,
  headers: Record<string, string>,
  method = 'GET',
): Promise<HandshakeAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: hostname,
      port,
      path,
      method,
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        ...headers,
      },
    });
    req.on('error', reject);
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.end();
  });
}
