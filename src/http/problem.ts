import { STATUS_CODES } from 'node:http';
import { BrokerError, type ErrorCode, errorCatalog } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { BrokerRequest, BrokerResponse, Handler, Next } from './dispatch/handler.js';

/** RFC 9457 §3.1.1 allows a non-dereferenceable URI; docs/routes.md's error table explains each code. */
const typeBase = 'urn:token-broker:problem:';

/** An RFC 9457 problem details object, with our stable `code` extension member. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  instance?: string;
}

export function problemFor(error: BrokerError, instance?: string): Problem {
  const problem: Problem = {
    type: `${typeBase}${error.code}`,
    title: errorCatalog[error.code].title,
    status: error.status,
    code: error.code,
  };
  if (error.expose && error.detail) problem.detail = error.detail;
  if (instance) problem.instance = instance;
  return problem;
}

/**
 * Writes a problem+json answer. The single place where an error becomes a response; written with
 * `node:http` alone, so both lanes answer alike (Node drops the body of an answer to HEAD itself).
 */
export function sendProblem(res: BrokerResponse, error: BrokerError): void {
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
  const body = JSON.stringify(problemFor(error, res.locals.requestId));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/problem+json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  // Read by the request metrics, which count answers by code.
  res.locals.problemCode = error.code;
  res.locals.problemLogged = error.logged;
  res.statusCode = error.status;
  res.end(body);
}

/**
 * The same answer as a whole HTTP/1.1 message, for a socket on which no request was read (a connection
 * the caps refuse, a request the HTTP parser or its timeouts refuse): no request id, and the connection
 * closes after it.
 */
export function rawProblem(error: BrokerError): string {
  const body = JSON.stringify(problemFor(error));
  return [
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}`,
    'Content-Type: application/problem+json; charset=utf-8',
    'Cache-Control: no-store',
    ...Object.entries(error.headers).map(([name, value]) => `${name}: ${value}`),
    'Connection: close',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

/**
 * Maps what Express and its body parsers throw (they carry `status` and `type`) to our codes.
 * Anything unknown is an internal error: logged with its stack, answered without it.
 */
export function toBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  const status = (error as { status?: unknown })?.status;
  const type = (error as { type?: unknown })?.type;
  if (type === 'entity.too.large' || status === 413)
    return new BrokerError('payload_too_large', { cause: error });
  if (type === 'encoding.unsupported' || type === 'charset.unsupported' || status === 415) {
    return new BrokerError('unsupported_media_type', { cause: error });
  }
  if (status === 404) return new BrokerError('not_found', { cause: error });
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new BrokerError('invalid_request', {
      detail: 'the request body could not be parsed',
      cause: error,
    });
  }
  return new BrokerError('internal_error', { cause: error });
}

/** Express's error middleware, also called by the direct lane (directRoutes.ts) with the same arguments. */
export type ErrorHandler = (error: unknown, req: BrokerRequest, res: BrokerResponse, next?: Next) => void;

export function errorHandler(logger: Logger): ErrorHandler {
  return (error, _req, res, _next) => {
    const brokerError = toBrokerError(error);
    const log = res.locals.log ?? logger;
    if (brokerError.status >= 500) {
      // `upstream_rejected` is logged at error level by the token cache, once per interval
      // (failureStreak.ts); repeating it for every waiting request would bury that line in a flood.
      // Only a bug earns a stack; an unreachable or slow upstream is expected weather, one line each.
      if (brokerError.code === 'internal_error') {
        log.error({ err: brokerError.cause ?? brokerError, code: brokerError.code }, brokerError.message);
      } else {
        log.warn({ code: brokerError.code, ...describeCause(brokerError.cause) }, brokerError.message);
      }
    }
    if (res.headersSent) {
      // A streamed answer failed midway: the status line is gone, so cutting the connection is the only
      // honest signal left to the client.
      res.destroy();
      return;
    }
    sendProblem(res, brokerError);
  };
}

/** The innermost message and the first system code (`ECONNREFUSED`, `UND_ERR_...`) along a cause chain. */
export function describeCause(cause: unknown): { reason?: string; errorCode?: string } {
  let reason: string | undefined;
  let errorCode: string | undefined;
  for (let link = cause, depth = 0; link instanceof Error && depth < 5; link = link.cause, depth += 1) {
    reason = link.message;
    const code = (link as { code?: unknown }).code;
    if (errorCode === undefined && typeof code === 'string') errorCode = code;
  }
  return { ...(reason ? { reason } : {}), ...(errorCode ? { errorCode } : {}) };
}

export const notFoundHandler: Handler = (_req, _res, next) => {
  next(new BrokerError('not_found'));
};
