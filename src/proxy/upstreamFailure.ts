import { BrokerError } from '../errors.js';

/** The reason the forwarder aborts an exchange that outlived `timeouts.totalMs`. */
export class DeadlineError extends Error {
  constructor() {
    super('the proxied exchange exceeded its total deadline');
    this.name = 'DeadlineError';
  }
}

/** Connections that failed: refused, reset, closed, unresolvable or unroutable. */
const networkFailures = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_INFO',
]);
const timeouts = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'ETIMEDOUT']);

/** The `code` of a Node or undici error (never its message, which could quote more than we want logged). */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : (error as Error | undefined)?.name;
}

/**
 * Maps a failure before the API's response headers to what the client sees. A connection that failed is
 * a temporary outage (503 with `Retry-After: 1`, RFC 9110 §15.6.4: the API may well be back in a second);
 * no answer in time is a gateway timeout (504, §15.6.5). 502 stays reserved for `upstream_rejected`, the
 * authorization server refusing our credentials. Anything else is a bug and is rethrown as it is.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-15.6
 */
export function failureBeforeHeaders(error: unknown, signal: AbortSignal): unknown {
  if (error instanceof BrokerError) return error;
  if (signal.reason instanceof DeadlineError)
    return new BrokerError('upstream_timeout', { cause: signal.reason });
  const code = errorCode(error);
  if (code !== undefined && timeouts.has(code)) return new BrokerError('upstream_timeout', { cause: error });
  if (code !== undefined && networkFailures.has(code)) {
    return new BrokerError('upstream_unavailable', { headers: { 'Retry-After': '1' }, cause: error });
  }
  return error;
}
