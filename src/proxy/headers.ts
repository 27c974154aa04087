import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Hop-by-hop fields: they describe one connection, so a proxy consumes them and never forwards them
 * (RFC 9110 §7.6.1), plus the pre-standard `keep-alive` and `proxy-connection`.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1
 */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/**
 * Request fields the API never sees: our client's credentials (`authorization`, `x-client-token`, and
 * the `dpop` proof of possession, RFC 9449) and cookies belong to the broker, not the API; `host` is set
 * for the API's origin; `origin` and `referer` name the web app, which the API has no use for and which
 * would let it track the app's pages; a client's own `forwarded`, `x-forwarded-*` and `x-real-ip` could
 * spoof what we assert (they are rebuilt from what `TRUST_PROXY` trusts); and `expect` is answered by the broker's own server (undici cannot send it).
 * `content-length` is set by the forwarder from the body it sends.
 */
const notSentUp = new Set([
  'host',
  'authorization',
  'x-client-token',
  'dpop',
  'cookie',
  'origin',
  'referer',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
  'expect',
  'content-length',
]);

/**
 * Response fields the client never sees: `server` and `x-powered-by`, and the fields that act on the
 * whole origin rather than on this response, so the API may not set them on the web app's origin: cookies (RFC 6265), `clear-site-data`, `alt-svc` (RFC 7838) and
 * `strict-transport-security` (RFC 6797). CORS fields are the broker's decision, never the API's.
 */
const notSentDown = new Set([
  // They describe the API's software to whoever probes it through the broker.
  'server',
  'x-powered-by',
  'set-cookie',
  'set-cookie2',
  'clear-site-data',
  'alt-svc',
  'strict-transport-security',
]);

/** Field names listed in `Connection`: hop-by-hop for this message only (RFC 9110 §7.6.1). */
function connectionOptions(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  const list = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(
    list
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** What the API is told about the original request and who made it. */
export interface ForwardedFor {
  /** The upstream access token, sent as `Authorization: Bearer` (RFC 6750 §2.1). */
  accessToken: string;
  /** The caller's address as the app derives it under `trust proxy`. */
  clientIp: string;
  /** The trusted `x-forwarded-for` chain, client first (http/forwardedFor.ts); `clientIp` alone by default. */
  forwardedFor?: string[] | undefined;
  /** `http` or `https`, as the caller reached the broker. */
  protocol: string;
  /** The host the caller addressed, when known. */
  host: string | undefined;
}

/**
 * The headers to send to the API: the client's end-to-end headers (`content-type`, `accept`, ...)
 * minus credentials, cookies and hop-by-hop fields, plus our bearer token and `x-forwarded-*`.
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  forwarded: ForwardedFor,
): OutgoingHttpHeaders {
  const perConnection = connectionOptions(incoming);
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || hopByHop.has(name) || perConnection.has(name) || notSentUp.has(name)) continue;
    headers[name] = value;
  }
  headers['x-forwarded-for'] = forwarded.forwardedFor?.join(', ') || forwarded.clientIp;
  headers['x-forwarded-proto'] = forwarded.protocol;
  if (forwarded.host) headers['x-forwarded-host'] = forwarded.host;
  headers.authorization = `Bearer ${forwarded.accessToken}`;
  return headers;
}

/** The API's response headers to pass to the client: all but hop-by-hop, origin-wide and CORS fields. */
export function downstreamResponseHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  const perConnection = connectionOptions(upstream);
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || hopByHop.has(name) || perConnection.has(name) || notSentDown.has(name))
      continue;
    if (name.startsWith('access-control-')) continue;
    headers[name] = value;
  }
  return headers;
}
