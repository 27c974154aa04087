import { randomUUID } from 'node:crypto';
import parseurl from 'parseurl';
import type { ErrorCode } from '../../errors.js';
import type { Logger } from '../../telemetry/logger.js';
import type { BrokerRequest, Handler, RequestLocals } from '../dispatch/handler.js';

/** A caller-supplied `x-request-id` is kept only if it cannot smuggle anything into logs or headers. */
const safeRequestId = /^[A-Za-z0-9._:-]{1,128}$/;
/** Refusals that name the page's origin as the reason: their line says which origin, so it can be found. */
const originRefusals: ReadonlySet<string> = new Set<ErrorCode>([
  'origin_not_allowed',
  'origin_mismatch',
  'upstream_not_allowed',
]);
/** Enough for any real origin; a client cannot make one line long. */
const loggedOriginLength = 100;

/**
 * Gives each request an id (honouring a safe `x-request-id`) and a child logger carrying it, and logs
 * one line when the answer is done: method, path (never the query string: the claim route accepts a key
 * there), the route's name, status, duration. Headers and bodies are never logged: they carry credentials and tokens.
 */
export function requestContext(logger: Logger): Handler {
  // The access line's fields are fixed (reqId, method, path, route, status, durationMs) and none is a redacted
  // key, so it is written without the redaction pass, which costs more than the rest of the line.
  const accessLog = logger.child({}, { redact: { paths: [] } });
  return (req, res, next) => {
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && safeRequestId.test(incoming) ? incoming : randomUUID();
    res.locals.requestId = requestId;
    // The child logger is made when something asks for it (errors, the proxy), not for every request.
    let log: Logger | undefined;
    Object.defineProperty(res.locals, 'log', {
      configurable: true,
      enumerable: true,
      get: () => {
        log ??= logger.child({ reqId: requestId });
        return log;
      },
      set: (value: Logger) => {
        log = value;
      },
    });
    res.setHeader('X-Request-Id', requestId);
    const started = performance.now();
    // Read now: a mount (`/api/proxy`) strips its prefix from `req.url` for good.
    const path = parseurl(req)?.pathname;
    res.on('finish', () => {
      const status = res.statusCode;
      // `reqId` first: the line reads as the request's child logger wrote it.
      const entry = {
        reqId: requestId,
        method: req.method,
        path,
        // The route the listener matched (directRoutes.ts); absent for a path no route has.
        route: res.locals.route,
        status,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      };
      if (res.locals.probe) accessLog.debug(entry, 'request');
      else if (status >= 500) accessLog.warn(entry, 'request failed');
      else if (status >= 400) accessLog.info(refusal(entry, req, res.locals), 'request');
      else accessLog.info(entry, 'request');
    });
    next();
  };
}

/**
 * A refused request's access line also carries the problem `code`, what the error gave to log (its reason),
 * and, when the origin was the reason, the Origin header (never the Referer, whose path and query may hold
 * credentials), truncated.
 */
function refusal<T extends object>(
  entry: T,
  req: BrokerRequest,
  { problemCode: code, problemLogged }: RequestLocals,
) {
  if (code === undefined) return entry;
  const origin = req.headers.origin;
  return originRefusals.has(code) && origin !== undefined
    ? { ...entry, code, ...problemLogged, origin: origin.slice(0, loggedOriginLength) }
    : { ...entry, code, ...problemLogged };
}
