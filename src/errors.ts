/**
 * Every error a client can see, by stable `code`. `http/problem.ts` is the only place that turns
 * these into RFC 9457 problem+json answers; docs/routes.md documents each code (a test keeps them in step).
 */
export const errorCatalog = {
  invalid_request: { status: 400, title: 'The request is malformed' },
  origin_required: { status: 400, title: 'No Origin or Referer header' },
  origin_not_allowed: { status: 403, title: 'This origin may not obtain client tokens' },
  invalid_api_key: { status: 401, title: 'Missing or unknown broker API key' },
  invalid_client_token: { status: 401, title: 'The client token is missing, malformed, forged or expired' },
  origin_mismatch: { status: 403, title: 'The client token was issued for another origin' },
  ip_mismatch: { status: 403, title: 'The client token was issued for another network address' },
  upstream_not_allowed: { status: 403, title: 'The client token or its origin may not reach this upstream' },
  path_not_allowed: { status: 403, title: 'No rule of the upstream allows this method and path' },
  token_revoked: { status: 401, title: 'The client token has been revoked' },
  invalid_dpop_proof: { status: 401, title: 'The DPoP proof is missing, invalid or replayed' },
  attestation_required: { status: 401, title: 'A proof is required before a client token is minted' },
  attestation_failed: { status: 401, title: 'The attestation proof was refused' },
  not_found: { status: 404, title: 'No such route' },
  method_not_allowed: { status: 405, title: 'Method not allowed on this route' },
  request_timeout: { status: 408, title: 'The request did not arrive in time' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported request body type' },
  rate_limited: { status: 429, title: 'Too many requests' },
  token_budget_exhausted: { status: 429, title: 'The client token has made all the calls it may make' },
  call_quota_exhausted: { status: 429, title: "The upstream's call quota is spent for this window" },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  upstream_rejected: { status: 502, title: 'The upstream authorization server refused the broker' },
  websocket_refused: { status: 502, title: 'The API refused the WebSocket handshake' },
  upstream_unavailable: { status: 503, title: 'The upstream is unavailable' },
  upstream_timeout: { status: 504, title: 'The upstream did not answer in time' },
  internal_error: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCatalog;

export interface BrokerErrorOptions {
  /** Safe to show a client. Never a secret, token or upstream body. */
  detail?: string;
  /** Extra response headers (`Retry-After`, `WWW-Authenticate`). */
  headers?: Record<string, string>;
  /**
   * Replaces the catalog status where a spec gives one code two statuses: `invalid_dpop_proof` is 400
   * at the token endpoint (RFC 9449 §5) and 401 at a resource (RFC 9449 §7.1).
   */
  status?: number;
  cause?: unknown;
  /**
   * Written on the refused request's access line, never sent: why, in the terms an operator acts on
   * (the upstream, the spent limit, the provider's verdict), so one line tells the whole refusal.
   */
  logged?: Readonly<Record<string, string | number>>;
}

export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | undefined;
  readonly headers: Record<string, string>;
  /** Whether `detail` may be sent to the client; 5xx internals are only logged. */
  readonly expose: boolean;
  readonly logged: Readonly<Record<string, string | number>> | undefined;

  constructor(code: ErrorCode, options: BrokerErrorOptions = {}) {
    super(options.detail ?? errorCatalog[code].title, { cause: options.cause });
    this.name = 'BrokerError';
    this.code = code;
    this.status = options.status ?? errorCatalog[code].status;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
    this.logged = options.logged;
    this.expose = this.status < 500 || code !== 'internal_error';
  }
}

/**
 * What an authorization server said when it refused a grant (RFC 6749 §5.2), or why we could not
 * reach it. Kept apart from BrokerError because it describes the upstream, not our client's request:
 * the cache decides whether it becomes `upstream_rejected` or `upstream_unavailable`.
 */
export class UpstreamError extends Error {
  /** OAuth `error` value, or `network`, `timeout`, `invalid_response`, `http_<status>`. */
  readonly error: string;
  /** The upstream's `error_description`; logged, never sent to our clients. */
  readonly description: string | undefined;
  readonly httpStatus: number | undefined;
  /** Seconds, from the upstream's `Retry-After`. */
  readonly retryAfter: number | undefined;

  constructor(
    error: string,
    options: { description?: string; httpStatus?: number; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(
      `upstream token request failed: ${error}${options.description ? ` (${options.description})` : ''}`,
      {
        cause: options.cause,
      },
    );
    this.name = 'UpstreamError';
    this.error = error;
    this.description = options.description;
    this.httpStatus = options.httpStatus;
    this.retryAfter = options.retryAfter;
  }

  /**
   * Our own credentials or configuration were refused: retrying will not help, an operator must act.
   * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
   */
  get isConfigurationError(): boolean {
    return [
      'invalid_client',
      'unauthorized_client',
      // Ours, not the server's: the federated assertion file cannot be sent (assertionFile.ts).
      'invalid_client_assertion',
      'unsupported_grant_type',
      'invalid_scope',
      'invalid_target',
      // The URL answers, but nothing there takes token requests.
      'http_404',
      'http_405',
    ].includes(this.error);
  }
}
