import { once } from 'node:events';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * Answers that are streams of events rather than documents: server-sent events (WHATWG HTML §9.2) and
 * newline-delimited JSON, as chat, live-update and AI APIs send them.
 */
const streamTypes =
  /^\s*(?:text\/event-stream|application\/(?:x-ndjson|ndjson|jsonl|x-jsonlines|json-seq))\s*(?:;|$)/i;

const streamAccept = /text\/event-stream|ndjson|jsonl|x-jsonlines|json-seq/i;

/** Whether the client asked for a stream: `EventSource` always sends `Accept: text/event-stream`. */
export function acceptsStream(accept: string | undefined): boolean {
  return accept !== undefined && streamAccept.test(accept);
}

/** Whether the API answered with a stream. */
export function isStream(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  return type !== undefined && streamTypes.test(type);
}

/** Why the relay stopped an answer whose API fell silent: undici's own code for the same failure. */
export class BodyIdleError extends Error {
  readonly code = 'UND_ERR_BODY_TIMEOUT';
  constructor() {
    super('the API sent nothing for too long');
    this.name = 'BodyIdleError';
  }
}

/**
 * Relays an answer whose chunks may be far apart, each as it arrives. The headers leave at once (a page's
 * `EventSource` opens on them, before any event). Once the API stays silent for `idleMs`, a stream of
 * events (`onIdle: 'end'`) ends cleanly, so the page's `EventSource` reconnects with its `Last-Event-ID`;
 * a document (`'cut'`) is incomplete, and the relay throws BodyIdleError for the caller to cut it.
 */
export async function relayStream(
  body: Readable,
  res: ServerResponse,
  signal: AbortSignal,
  idleMs: number,
  onIdle: 'end' | 'cut',
): Promise<void> {
  let idle = false;
  const timer = setTimeout(() => {
    idle = true;
    body.destroy();
  }, idleMs);
  res.flushHeaders();
  try {
    for await (const chunk of body) {
      timer.refresh();
      if (!res.write(chunk)) await once(res, 'drain', { signal });
      timer.refresh();
    }
  } catch (error) {
    if (!idle) throw error;
  } finally {
    clearTimeout(timer);
  }
  if (idle && onIdle === 'cut') throw new BodyIdleError();
  res.end();
}
