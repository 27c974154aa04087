import type { UpstreamConfig } from '../config/upstreamSettings.js';
import type { BreakerState } from './circuitBreaker.js';
import type { TlsClientIdentity } from './tlsClientIdentity.js';

/** What authenticates the broker at the token endpoint: the part of an upstream a reload may change. */
export type UpstreamCredentials = Pick<
  UpstreamConfig,
  'clientSecret' | 'clientKey' | 'clientAssertionFile' | 'tlsClient'
>;

/** An access token obtained from the upstream authorization server. Never sent to a browser. */
export interface UpstreamToken {
  accessToken: string;
  /** As the upstream said it (`Bearer` when it said nothing). */
  tokenType: string;
  /** When it stops being valid, in ms since the epoch (from `expires_in`, the JWT `exp`, or the default TTL). */
  expiresAt: number;
  /** When we received it, in ms since the epoch. */
  obtainedAt: number;
  refreshToken?: string | undefined;
  scope?: string | undefined;
  /**
   * With mutual TLS: the client certificate it was obtained with, which the API must be shown if the
   * token is certificate-bound (RFC 8705 §3). Set by the cache; never stored (it serialises to nothing).
   */
  tlsClient?: TlsClientIdentity | undefined;
}

/** Runs the grants against the authorization server. Throws `UpstreamError` on any failure. */
export interface TokenClient {
  /** @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4 */
  clientCredentials(credentials?: UpstreamCredentials): Promise<UpstreamToken>;
  /**
   * `credentials` (the configured ones by default) authenticate the request, so a caller that keys what it
   * gets by the credential knows which one was used.
   * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
   */
  refresh(refreshToken: string, credentials?: UpstreamCredentials): Promise<UpstreamToken>;
  /** The token endpoint, configured or discovered (RFC 8414, then OpenID discovery). */
  tokenEndpoint(): Promise<string>;
  /** Closes the connections it opened itself (mutual TLS), once their requests finish. */
  close?(): Promise<void>;
}

/** What the cache reports for readiness and metrics. */
export interface TokenCacheStatus {
  /** Whether a valid token is held right now. */
  hasToken: boolean;
  /** Ms since epoch, when a token is held. */
  expiresAt: number | undefined;
  /** The last renewal failure, cleared by a success. */
  lastError: { error: string; at: number } | undefined;
  /** The circuit breaker in front of the token endpoint; absent for a cache without one. */
  breaker?: BreakerState;
  /**
   * Ms since epoch before which the cache will not ask the token endpoint (backoff, `Retry-After`, open
   * breaker); absent when nothing holds the next attempt back. `/readyz?verbose` reads it.
   */
  nextAttemptAt?: number;
}

/**
 * For metrics: `get()` answered from memory (`hit`) or made its caller wait for the store or the upstream
 * (`miss`); a renewal started while a valid token is held, so nobody waits on it (`background_renewal`).
 */
export type TokenCacheEvent = 'hit' | 'miss' | 'background_renewal';

/**
 * Where the proxy gets the credential it sends the API: a token cache (OAuth grants) or a static API key
 * (`UPSTREAM_API_KEY`). The forwarder needs nothing more of either.
 */
export interface CredentialSource {
  /** The credential to send; throws BrokerError `upstream_unavailable` / `upstream_rejected` when none can be had. */
  get(): Promise<Pick<UpstreamToken, 'accessToken' | 'tlsClient'>>;
  /** The API answered 401 to `accessToken`: drop it so that `get()` renews it (compare and swap). */
  invalidate(accessToken: string): Promise<void>;
  /**
   * Present on a credential that cannot be renewed (a static API key): told of the API's 401 or 403, which
   * the forwarder then passes through without `invalidate()` or a retry.
   */
  refused?: ((status: number) => void) | undefined;
}

/** Hands out a valid upstream token; one upstream request per renewal however many callers wait. */
export interface TokenCache extends CredentialSource {
  /** A valid token; throws BrokerError `upstream_unavailable` / `upstream_rejected` when none can be had. */
  get(): Promise<UpstreamToken>;
  /**
   * Drops the cached token if it is still `accessToken` (compare and swap): the API answered 401 to it.
   * A later token already in place is kept, so a burst of 401s makes one renewal, not a burst.
   */
  invalidate(accessToken: string): Promise<void>;
  status(): TokenCacheStatus;
  /**
   * Writes the held token back to the shared store if the store lacks it (Redis restarted empty, or the
   * write failed during an outage) and no newer renewal lease was granted, so the other replicas take it
   * instead of asking the upstream again.
   */
  shareHeld(): Promise<void>;
  /** Stops background renewal timers. */
  close(): void;
}
