import type { ErrorCode } from '../errors.js';

/** Codes the broker puts in its RFC 9457 problem answers (docs/routes.md, "Error codes"). */
export type BrokerErrorCode = ErrorCode;

/**
 * Codes of this helper's own: `network_error` (the broker could not be reached), `invalid_response`
 * (a 2xx answer without a token and a lifetime), `http_error` (an error that is not problem+json).
 */
export type ClientErrorCode = 'network_error' | 'invalid_response' | 'http_error';

export interface BrokerClientErrorOptions {
  status?: number;
  detail?: string;
  retryAfter?: number;
  message?: string;
  cause?: unknown;
}

/** A failure of the token endpoint: the broker's problem+json `code`, or one of this helper's own codes. */
export class BrokerClientError extends Error {
  override readonly name: 'BrokerClientError';
  /** The broker's problem `code`, or one of this helper's {@link ClientErrorCode}s: stable, to switch on. */
  readonly code: BrokerErrorCode | ClientErrorCode | (string & Record<never, never>);
  /** HTTP status of the answer; 0 when the broker could not be reached. */
  readonly status: number;
  /** The problem's `detail`, safe to show. */
  readonly detail: string | undefined;
  /** Seconds the broker asked us to wait (`Retry-After`), when it said so. */
  readonly retryAfter: number | undefined;

  /** @param code the broker's `code`, or `network_error`, `invalid_response`, `http_error` */
  constructor(code: string, options: BrokerClientErrorOptions = {}) {
    super(options.message ?? options.detail ?? code, { cause: options.cause });
    this.name = 'BrokerClientError';
    this.code = code;
    this.status = options.status ?? 0;
    this.detail = options.detail;
    this.retryAfter = options.retryAfter;
  }
}
