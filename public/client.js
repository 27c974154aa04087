/**
 * token-broker browser helper. It fetches a short-lived client token from the broker, keeps it in
 * memory only (never localStorage, sessionStorage or cookies, where any script or a later visitor
 * could read it), renews it ahead of expiry and calls the protected API through the broker's proxy.
 * The upstream client secret and access token stay on the broker; this file never sees them.
 *
 * Plain ESM without dependencies or a build step: works in browsers and in Node 20+ (global fetch).
 * Types: `client.d.ts` next to this file.
 * @module
 */

/** Proxy refusals that a new token can fix. `origin_mismatch` is not one: a new token is bound to the same origin. */
const RENEWABLE_CODES = new Set(['invalid_client_token', 'ip_mismatch', 'token_revoked']);

/** A refused DPoP proof: the call is sent once more with the same token and a fresh proof. */
const PROOF_REFUSED = 'invalid_dpop_proof';

/** fetch upper-cases these methods only (Fetch standard, "normalize a method"); a proof must name what is sent. */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/** Statuses where the token endpoint asks us to come back later (RFC 6585 §4, RFC 9110 §15.6.4). */
const BUSY_STATUSES = new Set([429, 503]);

/** setTimeout stores its delay as a signed 32-bit integer; a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A failure of the token endpoint: the broker's problem+json `code`, or one of this helper's own codes. */
export class BrokerClientError extends Error {
  /**
   * @param {string} code the broker's `code`, or `network_error`, `invalid_response`, `http_error`
   * @param {{ status?: number, detail?: string, retryAfter?: number, message?: string, cause?: unknown }} [options]
   */
  constructor(code, options = {}) {
    super(options.message ?? options.detail ?? code, { cause: options.cause });
    this.name = 'BrokerClientError';
    /** Stable code to switch on. */
    this.code = code;
    /** HTTP status of the answer; 0 when the broker could not be reached. */
    this.status = options.status ?? 0;
    /** The problem's `detail`, safe to show. */
    this.detail = options.detail;
    /** Seconds the broker asked us to wait (`Retry-After`), when it said so. */
    this.retryAfter = options.retryAfter;
  }
}

/**
 * How many seconds before expiry a token is renewed: 20 % of its lifetime, at least 1 s and at most
 * 30 s, so a 900 s token renews 30 s early and a 3 s token 1 s early.
 * @param {number} expiresIn the token's lifetime in seconds
 * @returns {number}
 */
export function defaultRefreshMargin(expiresIn) {
  return Math.max(Math.min(30, expiresIn * 0.2), 1);
}

/**
 * Creates a client for one broker. Each client holds its own token; nothing is shared between clients.
 *
 * `fetch(path, init)` retries once with a new token when the proxy refuses the token
 * (`invalid_client_token`, `ip_mismatch`, `token_revoked`), but only when the request body can be
 * sent twice: none, a string, Blob, ArrayBuffer or typed array, URLSearchParams or FormData. A
 * `ReadableStream` body is consumed by the first attempt, so that refusal is returned to the caller
 * (the token is still dropped, so the next call uses a new one).
 *
 * With `dpop: true` the token is bound to a key the page cannot export (RFC 9449): see {@link createDpopSigner}.
 *
 * @param {import('./client.js').BrokerClientOptions} [options]
 * @returns {import('./client.js').BrokerClient}
 */
export function createBrokerClient(options = {}) {
  const {
    baseUrl = '',
    tokenPath = '/api/client-token',
    proxyPath = '/api/proxy',
    upstreams,
    fetch: fetchImpl = globalThis.fetch,
    now = () => Date.now(),
    refreshMargin = defaultRefreshMargin,
    maxRetryAfter = 30,
    autoRefresh = true,
    onEvent,
    dpop = false,
  } = options;
  if (typeof fetchImpl !== 'function') throw new TypeError('createBrokerClient needs a fetch implementation');
  const signer = dpop ? createDpopSigner({ now }) : undefined;

  const root = baseUrl.replace(/\/+$/, '');
  const tokenUrl = root + tokenPath;
  // The DPoP proof names `tokenUrl`: `htu` leaves out the query (RFC 9449 §4.2).
  const tokenRequestUrl = upstreams
    ? `${tokenUrl}${tokenUrl.includes('?') ? '&' : '?'}upstreams=${upstreams.map(encodeURIComponent).join(',')}`
    : tokenUrl;
  const proxyRoot = root + proxyPath.replace(/\/+$/, '');

  /** @type {import('./client.js').TokenInfo | undefined} */
  let current;
  /** @type {Promise<import('./client.js').TokenInfo> | undefined} */
  let pending;
  /** Bumped by clear(), so an answer to a request sent before it is not stored. */
  let generation = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;

  function emit(event) {
    if (!onEvent) return;
    try {
      onEvent(event);
    } catch (error) {
      // Like an EventTarget listener: a failing listener is reported, and never breaks the client.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  function cancelTimer() {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  }

  /** Renews before the next call needs the token, so calls rarely wait on the token endpoint. */
  function schedule() {
    cancelTimer();
    if (!autoRefresh || !current) return;
    const target = current;
    const delay = Math.min(Math.max(target.renewAt - now(), 0), MAX_TIMER_MS);
    timer = setTimeout(() => {
      timer = undefined;
      if (current !== target) return;
      // A failed background renewal is not retried here; the next call tries again.
      obtain('renewal').catch((error) => emit({ type: 'error', error }));
    }, delay);
    // In Node, a pending renewal alone must not keep the process alive.
    if (typeof timer === 'object' && typeof timer.unref === 'function') timer.unref();
  }

  /** One token request in flight however many callers wait (single flight). */
  function obtain(reason) {
    if (pending) return pending;
    const started = generation;
    const request = (async () => {
      try {
        const info = await requestToken();
        if (started === generation) {
          current = info;
          schedule();
          emit({ type: 'token', reason, info });
        }
        return info;
      } finally {
        if (pending === request) pending = undefined;
      }
    })();
    pending = request;
    return request;
  }

  async function requestToken() {
    for (let attempt = 0; ; attempt += 1) {
      // Expiry is counted from when we asked, on our own clock: the server signed the token after
      // that moment, so this never overestimates its life, and the two clocks need not agree.
      const sentAt = now();
      const response = await sendTokenRequest();
      if (response.ok) return parseToken(response, sentAt);
      const error = await toClientError(response);
      if (error.code === PROOF_REFUSED && attempt === 0) continue;
      const wait = error.retryAfter;
      if (attempt > 0 || !BUSY_STATUSES.has(response.status) || wait === undefined || wait > maxRetryAfter) {
        throw error;
      }
      emit({ type: 'wait', status: response.status, code: error.code, retryAfter: wait });
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  }

  async function sendTokenRequest() {
    /** @type {Record<string, string>} */
    const headers = { accept: 'application/json' };
    if (signer) headers.dpop = await signer.proof('POST', tokenUrl);
    try {
      // POST, because browsers send `Origin` on every POST but not on a same-origin GET, and a page
      // served with `Referrer-Policy: no-referrer` would then send neither (origin_required).
      return await fetchImpl(tokenRequestUrl, { method: 'POST', headers });
    } catch (cause) {
      throw new BrokerClientError('network_error', { detail: 'The broker could not be reached', cause });
    }
  }

  async function parseToken(response, sentAt) {
    let body;
    try {
      body = await response.json();
    } catch (cause) {
      throw invalidResponse(response.status, cause);
    }
    const token = body?.token;
    const expiresIn = body?.expiresIn;
    if (typeof token !== 'string' || token === '' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw invalidResponse(response.status);
    }
    const lifetime = expiresIn * 1000;
    const seconds = typeof refreshMargin === 'function' ? refreshMargin(expiresIn) : refreshMargin;
    // At most half the lifetime, or a very short token would be renewed on every call.
    const margin = Math.min((Math.max(seconds, 0) || 0) * 1000, lifetime / 2);
    return Object.freeze({
      token,
      // A broker that ignored our proof answers a bearer token, which is then used as one.
      tokenType: body.tokenType === 'DPoP' ? 'DPoP' : 'Bearer',
      expiresIn,
      obtainedAt: sentAt,
      renewAt: sentAt + lifetime - margin,
      expiresAt: sentAt + lifetime,
    });
  }

  async function toClientError(response) {
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
    return new BrokerClientError('http_error', {
      status: response.status,
      message: `The token endpoint answered HTTP ${response.status}`,
      retryAfter,
    });
  }

  /** A token the broker still accepts, or a new one. */
  async function currentInfo(reasonWhenMissing) {
    if (current && now() < current.renewAt) return current;
    const stale = current;
    try {
      return await obtain(stale ? 'renewal' : reasonWhenMissing);
    } catch (error) {
      // While the token endpoint fails, a token that has not expired yet is still worth using.
      if (stale && current === stale && now() < stale.expiresAt) return stale;
      throw error;
    }
  }

  /** `Authorization` for the token, plus a proof for this very call when the token is DPoP-bound. */
  async function authorize(init, info, url) {
    const headers = new Headers(init.headers);
    if (info.tokenType === 'DPoP' && signer) {
      const method = String(init.method ?? 'GET');
      const upper = method.toUpperCase();
      headers.set('authorization', `DPoP ${info.token}`);
      headers.set(
        'dpop',
        await signer.proof(NORMALIZED_METHODS.has(upper) ? upper : method, url, info.token),
      );
    } else {
      headers.set('authorization', `Bearer ${info.token}`);
    }
    return { ...init, headers };
  }

  async function brokerFetch(path, init = {}) {
    const url = `${proxyRoot}/${String(path).replace(/^\/+/, '')}`;
    const info = await currentInfo('initial');
    const response = await fetchImpl(url, await authorize(init, info, url));
    const code = await retryableRefusal(response);
    if (code === undefined) return response;
    // A refused proof says nothing against the token: only a fresh proof is needed.
    if (code !== PROOF_REFUSED) drop(info.token);
    if (!isReplayable(init.body)) return response;
    emit({ type: 'retry', code, url });
    response.body?.cancel().catch(() => {});
    const retryInfo = code === PROOF_REFUSED ? info : await currentInfo('rejected');
    const retried = await fetchImpl(url, await authorize(init, retryInfo, url));
    // Once only: a second refusal goes to the caller, and the next call starts with a new token.
    const again = await retryableRefusal(retried);
    if (again !== undefined && again !== PROOF_REFUSED) drop(retryInfo.token);
    return retried;
  }

  /** Forgets a refused token, unless a concurrent call has already replaced it. */
  function drop(token) {
    if (current?.token !== token) return;
    current = undefined;
    cancelTimer();
  }

  return {
    getToken: async () => (await currentInfo('initial')).token,
    refresh: async () => (await obtain('refresh')).token,
    fetch: brokerFetch,
    upstream: (name) => ({
      fetch: (path, init) =>
        brokerFetch(`${encodeURIComponent(name)}/${String(path).replace(/^\/+/, '')}`, init),
    }),
    tokenInfo: () => current,
    clear() {
      generation += 1;
      pending = undefined;
      cancelTimer();
      if (current === undefined) return;
      current = undefined;
      emit({ type: 'cleared' });
    },
  };
}

/** The broker's refusal code when the proxy refused the token or its proof (not the upstream API). */
async function retryableRefusal(response) {
  if (response.status !== 401 && response.status !== 403) return undefined;
  const problem = await readProblem(response.clone());
  if (!problem) return undefined;
  return RENEWABLE_CODES.has(problem.code) || problem.code === PROOF_REFUSED ? problem.code : undefined;
}

/**
 * The body of an RFC 9457 problem answer with a `code`, else undefined. An answer from the upstream
 * API passes the proxy untouched and is never mistaken for the broker's.
 */
async function readProblem(response) {
  const type = (response.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/problem+json') return undefined;
  try {
    const body = await response.json();
    return body !== null && typeof body === 'object' && typeof body.code === 'string' ? body : undefined;
  } catch {
    return undefined;
  }
}

/** `Retry-After` is delay-seconds or an HTTP-date (RFC 9110 §10.2.3); seconds from now, or undefined. */
function parseRetryAfter(value, nowMs) {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000));
}

/**
 * Makes DPoP proofs (RFC 9449 §4.2) with an ECDSA P-256 key that WebCrypto creates non-extractable: page
 * scripts can have it sign, but nothing can read it out, so a token bound to it is useless anywhere
 * else. The key lives in this object only: a reload makes a new key and the helper fetches a new token.
 * (IndexedDB could keep the CryptoKey across reloads, still non-extractable; for tokens that live
 * minutes it is not worth keeping key material on disk.) The broker issues no `DPoP-Nonce`, so none is sent.
 *
 * @param {{ now?: () => number, crypto?: Crypto }} [options]
 * @returns {import('./client.js').DpopSigner}
 */
export function createDpopSigner({ now = () => Date.now(), crypto = globalThis.crypto } = {}) {
  if (!crypto?.subtle)
    throw new TypeError('DPoP needs WebCrypto: serve the page over https or from localhost');
  const encoder = new TextEncoder();
  /** @type {Promise<{ privateKey: CryptoKey, jwk: JsonWebKey }> | undefined} */
  let keys;

  function keyPair() {
    keys ??= (async () => {
      const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      // A public key is always exportable; only its public members go into the proofs.
      const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', pair.publicKey);
      return { privateKey: pair.privateKey, jwk: { kty, crv, x, y } };
    })().catch((error) => {
      keys = undefined;
      throw error;
    });
    return keys;
  }

  const encodeJson = (value) => base64url(encoder.encode(JSON.stringify(value)));

  return {
    publicJwk: async () => ({ ...(await keyPair()).jwk }),
    async proof(method, url, accessToken) {
      const { privateKey, jwk } = await keyPair();
      // `htu` is the absolute URL without query and fragment (RFC 9449 §4.2).
      const htu = new URL(url, globalThis.document?.baseURI ?? globalThis.location?.href);
      htu.search = '';
      htu.hash = '';
      const payload = {
        jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
        htm: method,
        htu: htu.href,
        iat: Math.floor(now() / 1000),
      };
      if (accessToken !== undefined) {
        payload.ath = base64url(
          new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(accessToken))),
        );
      }
      const input = `${encodeJson({ typ: 'dpop+jwt', alg: 'ES256', jwk })}.${encodeJson(payload)}`;
      // WebCrypto's ECDSA signature is r || s, exactly what JWS ES256 wants (RFC 7518 §3.4).
      const signature = await crypto.subtle.sign(
        { name: 'ECDSA', hash: 'SHA-256' },
        privateKey,
        encoder.encode(input),
      );
      return `${input}.${base64url(new Uint8Array(signature))}`;
    },
  };
}

/** @param {Uint8Array} bytes */
function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Whether fetch can send this body a second time (a stream is read once). */
function isReplayable(body) {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    (typeof Blob !== 'undefined' && body instanceof Blob) ||
    (typeof URLSearchParams !== 'undefined' && body instanceof URLSearchParams) ||
    (typeof FormData !== 'undefined' && body instanceof FormData)
  );
}

function invalidResponse(status, cause) {
  return new BrokerClientError('invalid_response', {
    status,
    detail: 'The token endpoint did not answer a token and its lifetime',
    cause,
  });
}
