import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { Socket } from 'node:net';
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

/** A handshake request with raw headers: nothing is validated on the client side. */
function upgradeRequest(url: string, path: string, headers: Record<string, string>, method = 'GET') {
  const { hostname, port } = new URL(url);
  return request({
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
  return new Promise((resolve, reject) => {
    const req = upgradeRequest(url, path, headers, method);
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

/** A socket through the broker whose frames the test writes and reads as bytes. */
export interface RawClient {
  socket: Socket;
  /** Every byte received so far, the handshake's leftover first. */
  received(): Buffer;
  /** Settles when the broker has sent FIN. */
  ended: Promise<void>;
}

/** Makes a WebSocket handshake and hands over the TCP socket, to write frames and half-close it by hand. */
export function openRawClient(
  url: string,
  path: string,
  headers: Record<string, string>,
): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const req = upgradeRequest(url, path, headers);
    req.on('error', reject);
    req.on('response', (res) => reject(new Error(`the handshake was answered ${res.statusCode}`)));
    req.on('upgrade', (_res, socket, head) => {
      const chunks: Buffer[] = [head];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const ended = new Promise<void>((done) => socket.once('end', done));
      resolve({ socket, received: () => Buffer.concat(chunks), ended });
    });
    req.end();
  });
}
