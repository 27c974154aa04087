import { PROOF_REFUSED, retryableRefusal } from './problem.js';
import type { TokenHolder } from './tokenHolder.js';
import type {
  BrokerClientEvent,
  BrokerClientOptions,
  DpopSigner,
  FetchFunction,
  RenewableCode,
  TokenInfo,
} from './types.js';

/** fetch upper-cases these methods only (Fetch standard, "normalize a method"); a proof must name what is sent. */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

export interface ProxyFetchOptions {
  /** `baseUrl + proxyPath`, without a trailing `/`. */
  proxyRoot: string;
  fetch: FetchFunction;
  tokens: TokenHolder;
  signer: DpopSigner | undefined;
  emit: (event: BrokerClientEvent) => void;
  traceContext: BrokerClientOptions['traceContext'];
}

/** `fetch` through the broker's proxy with the client's token; see {@link BrokerClient.fetch}. */
export function createProxyFetch(
  options: ProxyFetchOptions,
): (path: string, init?: RequestInit) => Promise<Response> {
  const { proxyRoot, fetch, tokens, signer, emit, traceContext } = options;

  /** `Authorization` for the token, plus a proof for this very call when the token is DPoP-bound. */
  async function authorize(init: RequestInit, info: TokenInfo, url: string): Promise<RequestInit> {
    const headers = new Headers(init.headers);
    if (traceContext && !headers.has('traceparent')) {
      for (const [name, value] of Object.entries(traceContext() ?? {})) if (value) headers.set(name, value);
    }
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

  return async function brokerFetch(path: string, init: RequestInit = {}): Promise<Response> {
    const url = `${proxyRoot}/${String(path).replace(/^\/+/, '')}`;
    const info = await tokens.usable('initial');
    const response = await fetch(url, await authorize(init, info, url));
    const code = await retryableRefusal(response);
    if (code === undefined) return response;
    // A refused proof says nothing against the token: only a fresh proof is needed.
    if (code !== PROOF_REFUSED) tokens.drop(info.token);
    if (!isReplayable(init.body)) return response;
    emit({ type: 'retry', code: code as RenewableCode | typeof PROOF_REFUSED, url });
    response.body?.cancel().catch(() => {});
    const retryInfo = code === PROOF_REFUSED ? info : await tokens.usable('rejected');
    const retried = await fetch(url, await authorize(init, retryInfo, url));
    // Once only: a second refusal goes to the caller, and the next call starts with a new token.
    const again = await retryableRefusal(retried);
    if (again !== undefined && again !== PROOF_REFUSED) tokens.drop(retryInfo.token);
    return retried;
  };
}

/** Whether fetch can send this body a second time (a stream is read once). */
function isReplayable(body: RequestInit['body']): boolean {
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
