import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import type { ApiServer, RecordedRequest } from './apiServers.js';

/** What the API saw of one WebSocket handshake. */
export interface Handshake {
  url: string;
  headers: IncomingHttpHeaders;
  /** The protocols offered, in order. */
  protocols: string[];
}

export interface SocketApiOptions {
  /** Which offered protocol to select (default: none). */
  select?: (offered: string[]) => string | undefined;
  /** A status to answer a handshake with instead of 101; undefined accepts it. */
  refuse?: (handshake: Handshake) => number | undefined;
}

/** A real API on 127.0.0.1 that echoes every WebSocket message (text as text, binary as binary). */
export interface SocketApi extends ApiServer {
  handshakes: Handshake[];
  /** The API's end of every socket accepted, in order. */
  sockets: WebSocket[];
  /** Every close the API saw from the broker, as `[code, reason]`. */
  closes: [number, string][];
}

/**
 * Starts an echo API built with `ws` (no compression, as the broker speaks to it). Plain requests get
 * `200 {"ok":true}`; nothing it answers ever repeats a request header, so no credential comes back.
 */
export async function startSocketApi(options: SocketApiOptions = {}): Promise<SocketApi> {
  const handshakes: Handshake[] = [];
  const sockets: WebSocket[] = [];
  const closes: [number, string][] = [];
  const requests: RecordedRequest[] = [];
  const connections = new Set<Socket>();
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (offered) => options.select?.([...offered]) ?? false,
  });
  const server = createServer((req, res) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      bodyBytes: 0,
      body: Buffer.alloc(0),
      bodySha256: undefined,
      firstChunkAt: undefined,
      done: Promise.resolve('finished'),
    });
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  server.on('upgrade', (req, socket, head) => {
    const offered = (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean);
    const seen: Handshake = { url: req.url ?? '', headers: req.headers, protocols: offered };
    handshakes.push(seen);
    const status = options.refuse?.(seen);
    if (status !== undefined) {
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws);
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
      ws.on('close', (code, reason) => closes.push([code, reason.toString()]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    requests,
    handshakes,
    sockets,
    closes,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      for (const socket of connections) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
