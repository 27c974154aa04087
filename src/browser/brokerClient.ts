import { createDpopSigner } from './dpop.js';
import { createProxyFetch } from './proxyFetch.js';
import { createProxySocket } from './proxySocket.js';
import { createTokenHolder } from './tokenHolder.js';
import { createTokenRequest, defaultRefreshMargin } from './tokenRequest.js';
import type { BrokerClient, BrokerClientEvent, BrokerClientOptions } from './types.js';

/**
 * Creates a client for one broker. Each client holds its own token in memory; nothing is shared
 * between clients.
 *
 * `fetch(path, init)` retries once with a new token when the proxy refuses the token
 * (`invalid_client_token`, `ip_mismatch`, `token_revoked`), but only when the request body can be
 * sent twice: none, a string, Blob, ArrayBuffer or typed array, URLSearchParams or FormData. A
 * `ReadableStream` body is consumed by the first attempt, so that refusal is returned to the caller
 * (the token is still dropped, so the next call uses a new one).
 *
 * With `dpop: true` the token is bound to a key the page cannot export (RFC 9449): see {@link createDpopSigner}.
 */
export function createBrokerClient(options: BrokerClientOptions = {}): BrokerClient {
  const {
    baseUrl = '',
    tokenPath = '/api/client-token',
    proxyPath = '/api/proxy',
    upstreams,
    fetch = globalThis.fetch,
    now = () => Date.now(),
    refreshMargin = defaultRefreshMargin,
    maxRetryAfter = 30,
    autoRefresh = true,
    onEvent,
    dpop = false,
    WebSocket = globalThis.WebSocket,
    attestation,
    traceContext,
  } = options;
  if (typeof fetch !== 'function') throw new TypeError('createBrokerClient needs a fetch implementation');
  const signer = dpop ? createDpopSigner({ now }) : undefined;
  const root = baseUrl.replace(/\/+$/, '');

  function emit(event: BrokerClientEvent): void {
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

  const tokens = createTokenHolder({
    request: createTokenRequest({
      url: root + tokenPath,
      upstreams,
      fetch,
      now,
      signer,
      refreshMargin,
      maxRetryAfter,
      emit,
      attestation,
      challengeUrl: `${root}${tokenPath}/challenge`,
    }),
    now,
    autoRefresh,
    emit,
  });
  const proxyFetch = createProxyFetch({
    proxyRoot: root + proxyPath.replace(/\/+$/, ''),
    fetch,
    tokens,
    signer,
    emit,
    traceContext,
  });
  const proxySocket = createProxySocket({
    proxyRoot: root + proxyPath.replace(/\/+$/, ''),
    tokens,
    WebSocket,
  });
  return {
    getToken: async () => (await tokens.usable('initial')).token,
    refresh: async () => (await tokens.obtain('refresh')).token,
    fetch: proxyFetch,
    websocket: proxySocket,
    upstream: (name) => {
      const under = (path: string) => `${encodeURIComponent(name)}/${String(path).replace(/^\/+/, '')}`;
      return {
        fetch: (path, init) => proxyFetch(under(path), init),
        websocket: (path, protocols) => proxySocket(under(path), protocols),
      };
    },
    tokenInfo: () => tokens.current(),
    clear: () => tokens.clear(),
  };
}
