import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * Streams the API's answer body to the client, honouring back-pressure. The status line and headers
 * leave with the first chunk (or with `end()` for an empty body), in one write rather than a segment of
 * their own: a separate `flushHeaders()` write per request was a measurable share of the proxy's time.
 * The body's own `data` and `end` events drive it, as `pipe()` does, not an async iterator: an answer
 * that arrived whole then ends within the tick of its first chunk, so headers, body and the chunked
 * terminator leave in one `writev`, where the iterator's extra turn sent the terminator in a second write
 * (one syscall per proxied request more; see docs/performance.md).
 * A body that fails before its first byte still commits the headers, so the caller treats the failure
 * as "mid-answer" (cut the connection) and never sends a problem under the API's headers.
 * `signal` ends a wait for `drain` when the exchange is abandoned.
 */
export function relayBody(body: Readable, res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      if (res.write(chunk)) return;
      body.pause();
      res.once('drain', onDrain);
      signal.addEventListener('abort', onAbort);
    };
    const onDrain = () => {
      signal.removeEventListener('abort', onAbort);
      body.resume();
    };
    const onEnd = () => {
      settle();
      res.end();
      resolve();
    };
    const onFailure = (error?: unknown) => {
      settle();
      if (!res.headersSent && !res.destroyed) res.flushHeaders();
      reject(error ?? new Error('the API closed its answer before the end'));
    };
    const onAbort = () => onFailure(signal.reason);
    const onClose = () => onFailure();
    function settle() {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onFailure);
      body.off('close', onClose);
      res.off('drain', onDrain);
      signal.removeEventListener('abort', onAbort);
    }
    // Events already gone would never come again: an answer read to its end, or destroyed, before the relay.
    if (body.readableEnded) {
      onEnd();
      return;
    }
    if (body.destroyed) {
      onClose();
      return;
    }
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onFailure);
    // Destroyed without an error (the deadline's abort may do that): no `end` would ever come.
    body.once('close', onClose);
  });
}
