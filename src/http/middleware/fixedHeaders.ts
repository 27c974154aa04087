import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Handler } from '../dispatch/handler.js';

/**
 * Runs a middleware that only sets and removes fixed headers (helmet with a policy that holds no
 * per-request function, such as a nonce) once, against a recorder, and returns a middleware that applies
 * the same headers to every answer. Helmet runs a dozen middlewares per request to write headers that
 * never change; this writes them in one loop. Throws at start-up if the middleware does anything else.
 */
export function fixedHeaders<Req extends IncomingMessage, Res extends ServerResponse>(
  middleware: (req: Req, res: Res, next: (error?: unknown) => void) => void,
): Handler {
  const set = new Map<string, string | number | readonly string[]>();
  const removed = new Set<string>();
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      removed.delete(name.toLowerCase());
      set.set(name, value);
      return recorder;
    },
    removeHeader(name: string) {
      for (const key of set.keys()) if (key.toLowerCase() === name.toLowerCase()) set.delete(key);
      removed.add(name.toLowerCase());
    },
  };
  let passed = false;
  middleware({} as Req, recorder as unknown as Res, (error?: unknown) => {
    if (error) throw error;
    passed = true;
  });
  if (!passed) throw new Error('fixedHeaders: the middleware did not pass the request on synchronously');
  const headers = [...set];
  const removedNames = [...removed];
  return (_req, res, next) => {
    for (const [name, value] of headers) res.setHeader(name, value);
    for (const name of removedNames) res.removeHeader(name);
    next();
  };
}
