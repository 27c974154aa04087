import { BrokerError } from '../errors.js';

/**
 * The subprotocol a page offers to say it speaks to token-broker. A browser cannot set headers on a
 * WebSocket, so the client token rides in `Sec-WebSocket-Protocol`, as Kubernetes carries its bearer
 * token (`base64url.bearer.authorization.k8s.io.<token>`).
 */
export const brokerProtocol = 'token-broker';
/** The offered protocol that carries the client token: `token-broker.bearer.<token>`. */
export const bearerProtocolPrefix = `${brokerProtocol}.bearer.`;

/** RFC 9110 §5.6.2 `token`, which RFC 6455 §4.1 requires of every subprotocol name. */
const tokenChars = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Offers beyond this are not a page's protocols but an attempt to make the broker work. */
const maxOffered = 32;

/** What a page offered, split into the broker's part and the page's own. */
export interface ProtocolOffer {
  /** The client token from `token-broker.bearer.<token>`. */
  token: string;
  /** The page's own protocols, in its order: what the API is offered. */
  forwarded: string[];
}

function invalid(detail: string): BrokerError {
  return new BrokerError('invalid_request', { detail });
}

/**
 * Reads `Sec-WebSocket-Protocol` strictly: a comma-separated list of distinct RFC 9110 tokens
 * (RFC 6455 §4.1 and §11.3.4), which must hold `token-broker` and exactly one
 * `token-broker.bearer.<token>`. The token never appears in a `detail`.
 * @throws BrokerError `invalid_request` (a malformed list), `invalid_client_token` (no token offered)
 */
export function readProtocolOffer(header: string | string[] | undefined): ProtocolOffer {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  const offered = value.split(',').map((item) => item.trim());
  const missingToken = () =>
    new BrokerError('invalid_client_token', {
      detail: `offer the client token as the subprotocol ${bearerProtocolPrefix}<token>, next to ${brokerProtocol}`,
      headers: { 'WWW-Authenticate': 'Bearer realm="token-broker"' },
    });
  if (value.trim() === '') throw missingToken();
  if (offered.length > maxOffered)
    throw invalid(`Sec-WebSocket-Protocol offers more than ${maxOffered} protocols`);
  if (offered.some((item) => !tokenChars.test(item))) {
    throw invalid(
      'Sec-WebSocket-Protocol must be a comma-separated list of protocol names made of RFC 9110 token characters',
    );
  }
  if (new Set(offered).size !== offered.length) {
    throw invalid('Sec-WebSocket-Protocol offers the same protocol twice');
  }
  const bearers = offered.filter((item) => item.startsWith(bearerProtocolPrefix));
  if (bearers.length > 1) throw invalid(`offer one ${bearerProtocolPrefix}<token>, not several`);
  const token = bearers[0]?.slice(bearerProtocolPrefix.length);
  if (!token) throw missingToken();
  if (!offered.includes(brokerProtocol)) {
    throw invalid(`offer ${brokerProtocol} as well: the broker answers it when the API picks none of yours`);
  }
  return {
    token,
    forwarded: offered.filter((item) => item !== brokerProtocol && !item.startsWith(bearerProtocolPrefix)),
  };
}

/** Query parameters that carry bearer tokens (RFC 6750 §2.3 and the usual spellings). */
const tokenParameters = new Set(['access_token', 'token', 'client_token', 'x-client-token']);
/** A compact JWS: three base64url parts, the first a JSON header (`{"` is `eyJ`). */
const compactJws = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Refuses a handshake whose query carries a token: access logs, proxies and browser history keep
 * request targets, so a token there outlives its use. The query is otherwise the API's business.
 * @throws BrokerError `invalid_request`
 */
export function refuseQueryToken(query: string | undefined): void {
  if (!query) return;
  for (const [name, value] of new URLSearchParams(query)) {
    if (tokenParameters.has(name.toLowerCase()) || compactJws.test(value)) {
      throw invalid(
        `a token in the query string is refused (access logs keep it); offer it as the subprotocol ${bearerProtocolPrefix}<token>`,
      );
    }
  }
}
