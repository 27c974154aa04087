import { powAttestation } from './attestation.js';
import { BrokerClientError } from './errors.js';
import { PROOF_REFUSED, parseRetryAfter, readProblem } from './problem.js';
import type { BrokerClientEvent, DpopSigner, FetchFunction, TokenInfo } from './types.js';

/** Statuses where the token endpoint asks us to come back later (RFC 6585 §4, RFC 9110 §15.6.4). */
const BUSY_STATUSES = new Set([429, 503]);

/**
 * How many seconds before expiry a token is renewed: 20 % of its lifetime, at least 1 s and at most
 * 30 s, so a 900 s token renews 30 s early and a 3 s token 1 s early.
 * @param expiresIn the token's lifetime in seconds
 */
export function defaultRefreshMargin(expiresIn: number): number {
  return Math.max(Math.min(30, expiresIn * 0.2), 1);
}

export interface TokenRequestOptions {
  url: string;
  /** The named upstreams the token should open, sent as `?upstreams=a,b`; undefined: all the origin may reach. */
  upstreams?: readonly string[] | undefined;
  fetch: FetchFunction;
  now: () => number;
  /** Present for DPoP: the request carries a proof, and the token comes back bound to its key. */
  signer: DpopSigner | undefined;
  refreshMargin: number | ((expiresIn: number) => number);
  maxRetryAfter: number;
  emit: (event: BrokerClientEvent) => void;
  /** The page's own proof maker; undefined: answer `pow` challenges from `challengeUrl`. */
  attestation: (() => Promise<string>) | undefined;
  challengeUrl: string;
}

/**
 * One exchange with the token endpoint: asks once more after a refused proof, or after a 429/503 whose
 * `Retry-After` is at most `maxRetryAfter`; otherwise fails with a {@link BrokerClientError}.
 */
export function createTokenRequest(options: TokenRequestOptions): () => Promise<TokenInfo> {
  const { url, upstreams, fetch, now, signer, refreshMargin, maxRetryAfter, emit } = options;
  const attest =
    options.attestation ??
    powAttestation({ challengeUrl: options.challengeUrl, fetch, emit, refusal: toClientError });
  // From the first `attestation_required` on, every token request carries a proof: one round trip less.
  let proveFirst = false;
  // The DPoP proof names `url`: `htu` leaves out the query (RFC 9449 §4.2).
  const requestUrl = upstreams
    ? `${url}${url.includes('?') ? '&' : '?'}upstreams=${upstreams.map(encodeURIComponent).join(',')}`
    : url;

  async function send(proof: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (signer) headers.dpop = await signer.proof('POST', url);
    if (proof !== undefined) headers.attestation = proof;
    try {
      // POST, because browsers send `Origin` on every POST but not on a same-origin GET, and a page
      // served with `Referrer-Policy: no-referrer` would then send neither (origin_required).
      return await fetch(requestUrl, { method: 'POST', headers });
    } catch (cause) {
      throw new BrokerClientError('network_error', {
        detail: `The broker could not be reached at ${url}: check baseUrl, and that the broker is up`,
        cause,
      });
    }
  }

  async function parseToken(response: Response, sentAt: number): Promise<TokenInfo> {
    let body: { token?: unknown; expiresIn?: unknown; tokenType?: unknown } | null | undefined;
    try {
      body = await response.json();
    } catch (cause) {
      throw invalidResponse(response.status, cause);
    }
    const token = body?.token;
    const expiresIn = body?.expiresIn;
    if (
      typeof token !== 'string' ||
      token === '' ||
      typeof expiresIn !== 'number' ||
      !Number.isFinite(expiresIn) ||
      expiresIn <= 0
    ) {
      throw invalidResponse(response.status);
    }
    const lifetime = expiresIn * 1000;
    const seconds = typeof refreshMargin === 'function' ? refreshMargin(expiresIn) : refreshMargin;
    // At most half the lifetime, or a very short token would be renewed on every call.
    const margin = Math.min((Math.max(seconds, 0) || 0) * 1000, lifetime / 2);
    return Object.freeze({
      token,
      // A broker that ignored our proof answers a bearer token, which is then used as one.
      tokenType: body?.tokenType === 'DPoP' ? 'DPoP' : 'Bearer',
      expiresIn,
      obtainedAt: sentAt,
      renewAt: sentAt + lifetime - margin,
      expiresAt: sentAt + lifetime,
    });
  }

  async function toClientError(response: Response): Promise<BrokerClientError> {
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'), now());
    const problem = await readProblem(response);
    if (problem) {
      return new BrokerClientError(problem.code, {
        status: response.status,
        detail: typeof problem.detail === 'string' ? problem.detail : undefined,
        message: typeof problem.title === 'string' ? problem.title : undefined,
        retryAfter,
      });
    }
    // Not the broker's problem+json: another server answered, most often the page's own when the
    // helper was left to its default same-origin URL on a page served from elsewhere.
    return new BrokerClientError('http_error', {
      status: response.status,
      message:
        response.status === 404
          ? `No token broker answered at ${url} (HTTP 404): on a page not served by the broker, set baseUrl to the broker's URL`
          : `The token endpoint answered HTTP ${response.status}`,
      retryAfter,
    });
  }

  return async function requestToken(): Promise<TokenInfo> {
    let proof = proveFirst ? await attest() : undefined;
    let reproved = false;
    for (let attempt = 0; ; attempt += 1) {
      // Expiry is counted from when we asked, on our own clock: the server signed the token after
      // that moment, so this never overestimates its life, and the two clocks need not agree.
      const sentAt = now();
      const response = await send(proof);
      if (response.ok) return parseToken(response, sentAt);
      const error = await toClientError(response);
      if (error.code === PROOF_REFUSED && attempt === 0) continue;
      // Asked for a proof, or the one sent was stale or spent: once more with a fresh one.
      if (!reproved && error.code.startsWith('attestation_')) {
        proveFirst = true;
        reproved = true;
        proof = await attest();
        continue;
      }
      const wait = error.retryAfter;
      if (attempt > 0 || !BUSY_STATUSES.has(response.status) || wait === undefined || wait > maxRetryAfter) {
        throw error;
      }
      emit({ type: 'wait', status: response.status, code: error.code, retryAfter: wait });
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  };
}

function invalidResponse(status: number, cause?: unknown): BrokerClientError {
  return new BrokerClientError('invalid_response', {
    status,
    detail: 'The token endpoint did not answer a token and its lifetime',
    cause,
  });
}
