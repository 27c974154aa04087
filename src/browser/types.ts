import type { BrokerClientError } from './errors.js';

/** Proxy refusals after which `fetch` drops the token and retries once with a new one. */
export type RenewableCode =
  | 'invalid_client_token'
  | 'ip_mismatch'
  | 'token_revoked'
  | 'token_budget_exhausted';

/** The token held in memory. Times are milliseconds since the epoch, on the local clock. */
export interface TokenInfo {
  /** The client token (a JWT): send it as `Authorization: <tokenType> <token>`. */
  readonly token: string;
  /** `DPoP` when the broker bound the token to this client's DPoP key: every use needs a proof by it. */
  readonly tokenType: 'Bearer' | 'DPoP';
  /** Lifetime in seconds, as the broker answered it. */
  readonly expiresIn: number;
  /** When the token was requested; expiry is counted from here, not from the server's clock. */
  readonly obtainedAt: number;
  /** From this moment the token is renewed before use (and by the background timer). */
  readonly renewAt: number;
  /** When the token stops working. */
  readonly expiresAt: number;
}

/** Why a new token was fetched. */
export type TokenReason = 'initial' | 'renewal' | 'refresh' | 'rejected';

/** What the client reports through `onEvent`; for logs and status displays. */
export type BrokerClientEvent =
  /** A new token is in use. */
  | { readonly type: 'token'; readonly reason: TokenReason; readonly info: TokenInfo }
  /** `clear()` dropped the token. */
  | { readonly type: 'cleared' }
  /** The token endpoint answered 429 or 503; the client waits `retryAfter` seconds and asks once more. */
  | { readonly type: 'wait'; readonly status: number; readonly code: string; readonly retryAfter: number }
  /**
   * The proxy refused the token (the call is sent once more with a new token) or its DPoP proof
   * (`invalid_dpop_proof`: once more with the same token and a fresh proof).
   */
  | { readonly type: 'retry'; readonly code: RenewableCode | 'invalid_dpop_proof'; readonly url: string }
  /** The broker asked for a `pow` proof and the helper solved its challenge, in a worker or on the page's thread. */
  | { readonly type: 'attestation'; readonly solver: 'worker' | 'main'; readonly ms: number }
  /** A background renewal failed; the next call tries again. */
  | { readonly type: 'error'; readonly error: BrokerClientError };

/** The `WebSocket` class the client opens sockets with. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocket;

/** The `fetch` the client sends its requests with. */
export type FetchFunction = (input: string, init: RequestInit) => Promise<Response>;

export interface BrokerClientOptions {
  /** Where the broker is, e.g. `https://broker.example.com`; `''` (default) means this page's origin. */
  baseUrl?: string;
  /** Default `/api/client-token`. */
  tokenPath?: string;
  /** Default `/api/proxy`. */
  proxyPath?: string;
  /**
   * The named upstreams the token should open (sent as `?upstreams=a,b` to the token endpoint); by
   * default every upstream the page's origin may reach.
   */
  upstreams?: readonly string[];
  /** Default `globalThis.fetch`. */
  fetch?: FetchFunction;
  /** Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Milliseconds since the epoch. Default `Date.now`. */
  now?: () => number;
  /**
   * Seconds before expiry at which the token is renewed, or a function of the lifetime in seconds.
   * Capped at half the lifetime. Default {@link defaultRefreshMargin}.
   */
  refreshMargin?: number | ((expiresIn: number) => number);
  /**
   * Longest `Retry-After` (seconds) the client waits for on a 429/503 from the token endpoint before
   * asking once more; a longer one fails at once with `retryAfter` set. Default 30.
   */
  maxRetryAfter?: number;
  /** Renew in the background when the token reaches `renewAt`. Default true. */
  autoRefresh?: boolean;
  /** Called synchronously for each {@link BrokerClientEvent}; a throwing listener is reported, not propagated. */
  onEvent?: (event: BrokerClientEvent) => void;
  /**
   * Bind the token to a non-extractable ECDSA P-256 key made with WebCrypto (RFC 9449 DPoP): the token
   * request and every proxy call carry a proof signed by it, and the token is sent as
   * `Authorization: DPoP`. A copied token is then useless without the key. Needs a secure context
   * (https or localhost). Default false.
   */
  dpop?: boolean;
  /**
   * Makes the proof the broker asks for before minting (`CLIENT_TOKEN_ATTESTATION`), sent in the
   * `Attestation` header: a Turnstile, hCaptcha or reCAPTCHA response token, or a Firebase App Check
   * token. By default the helper answers a `pow` challenge itself. It is asked only after the broker
   * answered `attestation_required` once; from then on each token request carries a fresh proof.
   */
  attestation?: () => Promise<string>;
  /**
   * The page's W3C Trace Context for a call through the proxy, read at each attempt: its `traceparent`
   * (and `tracestate`) are sent with it, so the broker's spans and the API's join the page's trace. With
   * OpenTelemetry on the page: `() => { const c = {}; propagation.inject(context.active(), c); return c; }`.
   * A `traceparent` in the call's own headers wins. Default: none sent.
   */
  traceContext?: () => { traceparent?: string; tracestate?: string } | undefined;
}

/** Signs DPoP proofs (RFC 9449 §4.2) with a key that cannot leave WebCrypto. */
export interface DpopSigner {
  /**
   * A compact `dpop+jwt` (ES256) for one request: `htm` the method, `htu` the absolute URL without
   * query or fragment, a fresh `jti`, `iat` now, and `ath` when an access token is given.
   */
  proof(method: string, url: string, accessToken?: string): Promise<string>;
  /** The public key as it appears in the proofs (`kty`, `crv`, `x`, `y`). */
  publicJwk(): Promise<JsonWebKey>;
}

export interface BrokerClient {
  /**
   * A token valid for at least the refresh margin, fetched when needed; one request in flight however
   * many callers wait. Rejects with {@link BrokerClientError}.
   */
  getToken(): Promise<string>;
  /** Fetches a new token now (joining a request already in flight) and uses it from then on. */
  refresh(): Promise<string>;
  /**
   * `fetch` through the broker's proxy: `path` (with or without a leading `/`, query string allowed) is
   * appended to `baseUrl + proxyPath`, and `Authorization: Bearer <token>` (or `DPoP <token>` plus a
   * `DPoP` proof, for a DPoP-bound token) replaces any caller's `Authorization`; other headers are kept.
   * When the broker refuses the token with a {@link RenewableCode}, the call is retried once with a new
   * token if its body is replayable (none, string, Blob, BufferSource, URLSearchParams, FormData; not a
   * ReadableStream); after `invalid_dpop_proof`, once with a fresh proof. Other answers,
   * including 429/503 from the proxy (but `429 token_budget_exhausted`, which a new token fixes), are
   * returned as they are. Rejects with {@link BrokerClientError}
   * when no token can be had, and like `fetch` on network errors.
   */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /**
   * A WebSocket to the API through the proxy (`ws:`/`wss:` for `baseUrl + proxyPath/path`), offering the
   * token as the subprotocol `token-broker.bearer.<token>` next to `token-broker` and `protocols`. The
   * broker closes it with `4401` when the token expires and `4403` when it is revoked: call `websocket`
   * again for a socket with a fresh token. Rejects with {@link BrokerClientError} when no token can be
   * had, or `invalid_dpop_proof` for a DPoP-bound token (a socket cannot carry a proof).
   */
  websocket(path: string, protocols?: string | string[]): Promise<WebSocket>;
  /**
   * The named upstream `name` (`UPSTREAMS`): its `fetch` and `websocket` are this client's under
   * `proxyPath/<name>/`, with the same token. One client calls several APIs with one token.
   */
  upstream(name: string): {
    fetch(path: string, init?: RequestInit): Promise<Response>;
    websocket(path: string, protocols?: string | string[]): Promise<WebSocket>;
  };
  /** Drops the token, stops background renewal and ignores an answer still on its way. */
  clear(): void;
  /** The token in memory, or undefined. */
  tokenInfo(): TokenInfo | undefined;
}
