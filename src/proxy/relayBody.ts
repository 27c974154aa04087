import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * Streams the API's answer body to the client, honouring back-pressure. The status line and headers
 * leave with the first chunk (or with `end()` for an empty body), in one write rather than a segment of
 * their own: a separate `flushHeaders()` write per request was a measurable share of the proxy's time.
 * A body that fails before its first byte still commits the headers, so the caller treats the failure
 * as "mid-answer" (cut the connection) and never sends a problem under the API's headers.
 * `signal` aborts a wait for `drain` when the exchange is abandoned.
 */
export async function relayBody(body: Readable, res: ServerResponse, signal: AbortSignal): Promise<void> {
  try {
    for await (const chunk of body) {
      if (!res.write(chunk)) await once(res, 'drain', { signal });
    }
  } catch (error) {
    if (!res.headersSent && !res.destroyed) res.flushHeaders();
    throw error;
  }
  res.end();
}
