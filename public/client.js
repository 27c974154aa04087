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
 * @param {import('./client.js').BrokerClientOptions} [options]
 * @returns {import('./client.js').BrokerClient}
 */
export function createBrokerClient(options = {}) {
  const {
    baseUrl = '',
    tokenPath = '/api/client-token',
    proxyPath = '/api/proxy',
    fetch: fetchImpl = globalThis.fetch,
    now = () => Date.now(),
    refreshMargin = defaultRefreshMargin,
    maxRetryAfter = 30,
    autoRefresh = true,
    onEvent,
  } = options;
  if (typeof fetchImpl !== 'function') throw new TypeError('createBrokerClient needs a fetch implementation');

  const root = baseUrl.replace(/\/+$/, '');
  const tokenUrl = root + tokenPath;
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
      const wait = error.retryAfter;
      if (attempt > 0 || !BUSY_STATUSES.has(response.status) || wait === undefined || wait > maxRetryAfter) {
        throw error;
      }
      emit({ type: 'wait', status: response.status, code: error.code, retryAfter: wait });
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  }

  async function sendTokenRequest() {
    try {
      // POST, because browsers send `Origin` on every POST but not on a same-origin GET, and a page
      // served with `Referrer-Policy: no-referrer` would then send neither (origin_required).
      return await fetchImpl(tokenUrl, { method: 'POST', headers: { accept: 'application/json' } });
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
  async function currentToken(reasonWhenMissing) {
    if (current && now() < current.renewAt) return current.token;
    const stale = current;
    try {
      return (await obtain(stale ? 'renewal' : reasonWhenMissing)).token;
    } catch (error) {
      // While the token endpoint fails, a token that has not expired yet is still worth using.
      if (stale && current === stale && now() < stale.expiresAt) return stale.token;
      throw error;
    }
  }

  async function brokerFetch(path, init = {}) {
    const url = `${proxyRoot}/${String(path).replace(/^\/+/, '')}`;
    const token = await currentToken('initial');
    const response = await fetchImpl(url, withToken(init, token));
    const code = await renewableRefusal(response);
    if (code === undefined) return response;
    drop(token);
    if (!isReplayable(init.body)) return response;
    emit({ type: 'retry', code, url });
    response.body?.cancel().catch(() => {});
    const retryToken = await currentToken('rejected');
    const retried = await fetchImpl(url, withToken(init, retryToken));
    // Once only: a second refusal goes to the caller, and the next call starts with a new token.
    if ((await renewableRefusal(retried)) !== undefined) drop(retryToken);
    return retried;
  }

  /** Forgets a refused token, unless a concurrent call has already replaced it. */
  function drop(token) {
    if (current?.token !== token) return;
    current = undefined;
    cancelTimer();
  }

  return {
    getToken: () => currentToken('initial'),
    refresh: async () => (await obtain('refresh')).token,
    fetch: brokerFetch,
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

/** The broker's refusal code when the proxy refused the token itself (not the upstream API). */
async function renewableRefusal(response) {
  if (response.status !== 401 && response.status !== 403) return undefined;
  const problem = await readProblem(response.clone());
  return problem && RENEWABLE_CODES.has(problem.code) ? problem.code : undefined;
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

function withToken(init, token) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return { ...init, headers };
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
