import { createHash } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type RequestOptions,
  request,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { AuthServer } from '../../src/dev/authServer.js';

/** What a fake API saw of one request. */
export interface RecordedRequest {
  method: string;
  /** The raw request target, exactly as received. */
  url: string;
  headers: IncomingHttpHeaders;
  /** Body bytes received so far. */
  bodyBytes: number;
  /** The body, kept only up to the first 1 MiB (big bodies are counted and hashed instead). */
  body: Buffer;
  /** SHA-256 (hex) of the whole body, once it ended. */
  bodySha256: string | undefined;
  /** `performance.now()` when the first body byte arrived. */
  firstChunkAt: number | undefined;
  /** Settles when the exchange is over: `finished` (answer sent) or `closed` (connection cut first). */
  done: Promise<'finished' | 'closed'>;
}

/** A real `node:http` (or `node:https`) API on 127.0.0.1 with an ephemeral port. */
export interface ApiServer {
  /** `http://127.0.0.1:<port>`, or `https://` with TLS. */
  origin: string;
  port: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Handles one request; `body` resolves when the request body has been read and recorded. */
export type ApiHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  record: RecordedRequest,
  body: Promise<void>,
) => void;

const keptBodyBytes = 1024 * 1024;

/**
 * Starts an API that records every request (method, raw target, headers, body) and runs `handler`;
 * over TLS with `tls` (its certificate, and whether it asks clients for theirs).
 */
export async function startApiServer(handler: ApiHandler, tls?: HttpsOptions): Promise<ApiServer> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    let settle: (outcome: 'finished' | 'closed') => void = () => {};
    const record: RecordedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      bodyBytes: 0,
      body: Buffer.alloc(0),
      bodySha256: undefined,
      firstChunkAt: undefined,
      done: new Promise((resolve) => {
        settle = resolve;
      }),
    };
    requests.push(record);
    res.on('close', () => settle(res.writableFinished ? 'finished' : 'closed'));
    const hash = createHash('sha256');
    const kept: Buffer[] = [];
    const body = new Promise<void>((resolve) => {
      req.on('data', (chunk: Buffer) => {
        record.firstChunkAt ??= performance.now();
        if (record.bodyBytes < keptBodyBytes) kept.push(chunk.subarray(0, keptBodyBytes - record.bodyBytes));
        record.bodyBytes += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => {
        record.body = Buffer.concat(kept);
        record.bodySha256 = hash.digest('hex');
        resolve();
      });
      req.on('error', () => resolve());
    });
    handler(req, res, record, body);
  };
  const server = tls ? createHttpsServer(tls, listener) : createServer(listener);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Answers 200 with JSON `{ method, url, headers, bodyBytes, bodySha256 }` once the body was read, plus
 * `responseHeaders` (to check what the proxy strips on the way down).
 */
export function startEchoApi(responseHeaders: Record<string, string | string[]> = {}): Promise<ApiServer> {
  return startApiServer((req, res, record, body) => {
    void body.then(() => {
      const payload = JSON.stringify({
        method: record.method,
        url: record.url,
        headers: req.headers,
        bodyBytes: record.bodyBytes,
        bodySha256: record.bodySha256,
      });
      res.writeHead(200, { ...responseHeaders, 'content-type': 'application/json' });
      res.end(payload);
    });
  });
}

/** Answers 200 `{"ok":true}` to everything (an echo would hand the upstream token back). */
export function startFixedApi(): Promise<ApiServer> {
  return startApiServer((_req, res, _record, body) => {
    void body.then(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
}

/**
 * Answers a request in place of the API (slowly, with an error, or not at all) and resolves true, or
 * resolves false to let the API answer.
 */
export type ApiFault = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/**
 * A protected API: 200 only with a JWT access token of `auth` for its resource, else 401. `fault`, when
 * given, runs first on every request (the chaos soak makes the API slow or failing with it).
 */
export function startVerifyingApi(auth: AuthServer, fault?: ApiFault): Promise<ApiServer> {
  const keys = createRemoteJWKSet(new URL(auth.jwksUri));
  return startApiServer((req, res, _record, body) => {
    void body.then(async () => {
      if (fault && (await fault(req, res))) return;
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      try {
        await jwtVerify(token, keys, { issuer: auth.issuer, audience: auth.resource, typ: 'at+jwt' });
      } catch {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_token"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hello: 'from the API', headers: Object.keys(req.headers) }));
    });
  });
}

/** Reads the body, then waits `delayMs` before answering 200 `slow`. */
export function startSlowApi(delayMs: number): Promise<ApiServer> {
  return startApiServer((_req, res, _record, body) => {
    void body.then(() => {
      const timer = setTimeout(() => res.end('slow'), delayMs);
      res.on('close', () => clearTimeout(timer));
    });
  });
}

/**
 * Answers 401 (`WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750 §3) unless `accepts(token)`
 * for the request's bearer token; else 200 with the echo payload. `hold401` may delay the 401s (to line up
 * a burst of requests that all used the same token).
 */
export function startTokenCheckingApi(
  accepts: (token: string) => boolean,
  hold401: (record: RecordedRequest) => Promise<void> = async () => {},
): Promise<ApiServer> {
  return startApiServer((req, res, record, body) => {
    void body.then(async () => {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (accepts(token)) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ url: record.url, bodyBytes: record.bodyBytes, bodySha256: record.bodySha256 }),
        );
        return;
      }
      await hold401(record);
      res.writeHead(401, {
        'www-authenticate': 'Bearer error="invalid_token"',
        'content-type': 'application/json',
      });
      res.end('{"error":"invalid_token"}');
    });
  });
}

/** The deterministic byte at offset `i` of a streamed body, so a receiver can check every byte. */
export function patternByte(i: number): number {
  return (i * 31 + 7) & 0xff;
}

/** A chunk of the pattern body starting at `offset`. */
export function patternChunk(offset: number, length: number): Buffer {
  const chunk = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 1) chunk[i] = patternByte(offset + i);
  return chunk;
}

/** The pattern body of `totalBytes`, in chunks of `chunkBytes`. */
export function* patternChunks(totalBytes: number, chunkBytes: number): Generator<Buffer> {
  for (let offset = 0; offset < totalBytes; offset += chunkBytes)
    yield patternChunk(offset, Math.min(chunkBytes, totalBytes - offset));
}

/** SHA-256 (hex) of the chunks, as the API records `bodySha256`. */
export function sha256Of(chunks: Iterable<Buffer>): string {
  const hash = createHash('sha256');
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest('hex');
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Streams `totalBytes` of the pattern body in `chunkBytes` chunks, honouring backpressure. After the first
 * chunk it waits for `afterFirstChunk()` (e.g. until the client saw that chunk: a buffering proxy would
 * then never finish). `produced()` tells how far it got.
 */
export function startStreamingApi(options: {
  totalBytes: number;
  chunkBytes: number;
  afterFirstChunk?: () => Promise<void>;
}): Promise<ApiServer & { produced(): number }> {
  let produced = 0;
  return startApiServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(options.totalBytes),
    });
    const write = async () => {
      let offset = 0;
      while (offset < options.totalBytes && !res.destroyed) {
        const length = Math.min(options.chunkBytes, options.totalBytes - offset);
        res.write(patternChunk(offset, length));
        offset += length;
        produced = offset;
        if (offset === length && options.afterFirstChunk) await options.afterFirstChunk();
        if (res.writableNeedDrain) await drainedOrClosed(res);
      }
      res.end();
    };
    void write();
  }).then((server) => Object.assign(server, { produced: () => produced }));
}

/** Sends headers, then one byte every `intervalMs`, forever (until the connection closes). */
export function startDripApi(intervalMs: number): Promise<ApiServer> {
  return startApiServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.flushHeaders();
    const timer = setInterval(() => res.write('.'), intervalMs);
    res.on('close', () => clearInterval(timer));
  });
}

/**
 * Cuts the connection: `before-headers` destroys the socket as soon as the request arrives;
 * `mid-body` sends headers announcing 1 MiB and 1 KiB of it, then destroys the socket.
 */
export function startResetApi(when: 'before-headers' | 'mid-body'): Promise<ApiServer> {
  return startApiServer((req, res) => {
    if (when === 'before-headers') {
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(1024 * 1024) });
    res.write(patternChunk(0, 1024), () => setTimeout(() => req.socket.destroy(), 20));
  });
}

/** A port on 127.0.0.1 where nothing listens (a server was bound there, then closed). */
export async function closedPort(): Promise<number> {
  const server = await startApiServer((_req, res) => res.end());
  await server.close();
  return server.port;
}

/**
 * GETs `options` (on its own connection) and hashes the answer as it streams in, calling `onFirstChunk`
 * when the first bytes arrive: the moment a streaming test compares with how much the API had produced.
 */
export function downloadHashed(
  options: RequestOptions,
  onFirstChunk: () => void,
): Promise<{ bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...options, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        if (bytes === 0) onFirstChunk();
        bytes += chunk.length;
        hash.update(chunk);
      });
      res.on('end', () => resolve({ bytes, sha: hash.digest('hex') }));
      res.on('error', reject);
    });
    req.end();
  });
}

/**
 * Uploads the pattern body of `totalBytes` in 1 MiB chunks with `options` (on its own connection). After
 * the first chunk it waits for `firstChunkArrived()`: a proxy that buffered the body would never let that
 * chunk through before the rest was sent. Resolves with the answer once it is complete.
 */
export function uploadPattern(
  options: RequestOptions,
  totalBytes: number,
  firstChunkArrived: () => Promise<void>,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...options, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    const send = async () => {
      const chunks = patternChunks(totalBytes, 1024 * 1024);
      req.write(chunks.next().value);
      await firstChunkArrived();
      for (const chunk of chunks) {
        if (!req.write(chunk)) await new Promise((resolve) => req.once('drain', resolve));
      }
      req.end();
    };
    send().catch(reject);
  });
}
