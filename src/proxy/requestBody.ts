import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';

/** The body to send upstream, and whether it can be sent a second time after a 401. */
export type OutgoingBody =
  | { replayable: true; bytes: Buffer | null }
  | { replayable: false; stream: Readable; contentLength: string | undefined };

/** Thrown when the client goes away before its body was read; the forwarder answers nobody. */
export class ClientGoneError extends Error {
  constructor() {
    super('the client closed the connection before sending its whole body');
    this.name = 'ClientGoneError';
  }
}

/**
 * Reads up to `limit + 1` bytes without consuming more, so the rest can still be streamed. Resolves with
 * `ended: true` when the whole body fit.
 */
function readPrefix(
  req: IncomingMessage,
  limit: number,
  signal: AbortSignal,
): Promise<{ chunks: Buffer[]; ended: boolean }> {
  if (req.readableEnded) {
    return Promise.reject(
      new Error('the request body was already consumed: no body parser may run before the proxy'),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error: Error | undefined, ended = false) => {
      req.off('readable', onReadable);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      signal.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve({ chunks, ended });
    };
    const onReadable = () => {
      for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) {
        chunks.push(chunk);
        size += chunk.length;
        if (size > limit) return finish(undefined, false);
      }
    };
    const onEnd = () => finish(undefined, true);
    const onError = () => finish(new ClientGoneError());
    const onClose = () => finish(new ClientGoneError());
    const onAbort = () => finish(signal.reason instanceof Error ? signal.reason : new ClientGoneError());
    req.on('readable', onReadable);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The body as a stream of its own: undici destroys the stream it sends when the exchange fails, and
 * destroying `req` itself would leave no way to answer the client (and cut the upload it is still
 * sending). The client going away still ends the copy, with ClientGoneError.
 */
function detachedBody(prefix: Buffer[], req: IncomingMessage): Readable {
  const copy = new PassThrough();
  for (const chunk of prefix) copy.write(chunk);
  const onClose = () => {
    if (!req.complete) copy.destroy(new ClientGoneError());
  };
  req.once('close', onClose);
  copy.once('close', () => req.off('close', onClose));
  req.pipe(copy);
  return copy;
}

/**
 * Prepares the request body for the API. A 401 can only be retried with a body we still hold, so a body
 * of at most `maxReplayBytes` is read into memory first (known from `content-length`, or by reading that
 * far when the body is chunked); a larger one is streamed as it arrives and cannot be replayed.
 * Per RFC 9112 §6.3 a request has a body only when it has `content-length` or `transfer-encoding`.
 */
export async function prepareBody(
  req: IncomingMessage,
  maxReplayBytes: number,
  signal: AbortSignal,
): Promise<OutgoingBody> {
  const contentLength = req.headers['content-length'];
  const declared = contentLength === undefined ? undefined : Number(contentLength);
  if (declared === 0 || (declared === undefined && req.headers['transfer-encoding'] === undefined)) {
    return { replayable: true, bytes: null };
  }
  if (declared !== undefined && declared > maxReplayBytes) {
    return { replayable: false, stream: detachedBody([], req), contentLength };
  }
  const { chunks, ended } = await readPrefix(req, maxReplayBytes, signal);
  if (ended) return { replayable: true, bytes: Buffer.concat(chunks) };
  return {
    replayable: false,
    stream: detachedBody(chunks, req),
    contentLength,
  };
}
