import type { IncomingMessage } from 'node:http';
import { BrokerError } from '../errors.js';
import type { TlsClientIdentity } from '../upstream/tlsClientIdentity.js';
import type { CredentialSource, UpstreamToken } from '../upstream/types.js';
import { type CredentialPlacement, placeCredential, queryWithCredential } from './credentialPlacement.js';
import type { ForwardRequest } from './forward.js';
import { upstreamRequestHeaders } from './headers.js';
import { HandedOverSocket, type RawSocket } from './socketHandover.js';
import { clientQuery, parseApiUrl, upstreamTarget } from './targetUrl.js';

/**
 * Options of both handshakes of a relayed socket. No extension is offered or accepted: frames go through
 * as they came (websocketRelay.ts), and a compressed frame would depend on the ones before it.
 */
export const relaySocketOptions = { perMessageDeflate: false } as const;

export interface WebSocketForwarderOptions {
  /** `UPSTREAM_API_URL`: `http` becomes `ws`, `https` becomes `wss`. */
  apiUrl: string;
  /** The upstream's token cache or static API key. */
  credentials: CredentialSource;
  /** `UPSTREAM_CREDENTIAL_IN`; undefined: `Authorization: Bearer`. */
  credentialIn?: CredentialPlacement | undefined;
  /** Bound on the API's handshake (connect and 101), as `UPSTREAM_TIMEOUT_MS` bounds a request's headers. */
  handshakeTimeoutMs: number;
}

/** The API's side of a socket, paused until the relay listens. */
export interface ApiSocket {
  socket: RawSocket;
  /** The page protocol the API selected, if any. */
  protocol: string | undefined;
}

export interface WebSocketForwarder {
  /**
   * Opens the API's side of a socket with the upstream credential, offering the page's own protocols.
   * The credential goes where `credentialIn` says, as for HTTP. A 401 drops the cached token and tries
   * once more with a new one, as the HTTP proxy does; a static key is not renewed (its 401 or 403 is
   * reported to it and refused).
   * @throws BrokerError `invalid_request` (unsafe path), `upstream_unavailable`, `upstream_timeout`,
   *   `websocket_refused` (the API answered something else than 101), or what `credentials.get()` throws
   */
  connect(
    req: IncomingMessage,
    request: Omit<ForwardRequest, 'log'>,
    protocols: string[],
  ): Promise<ApiSocket>;
}

/** Sent by the ws client itself (RFC 6455 §4.1); the client's own would clash with them. */
const handshakeFields = /^sec-websocket-/;

type Attempt = { socket: RawSocket; protocol: string | undefined } | { status: number } | { error: Error };

export function createWebSocketForwarder({
  apiUrl,
  credentials,
  credentialIn,
  handshakeTimeoutMs,
}: WebSocketForwarderOptions): WebSocketForwarder {
  const placement = credentialIn?.in === 'authorization' ? undefined : credentialIn;
  const base = parseApiUrl(apiUrl);
  const wsOrigin = base.origin.replace(/^http/, 'ws');

  /**
   * The page's protocols go in the header rather than through ws's `protocols`: ws, like a browser, fails
   * a handshake whose answer names none of them, but an API may pick none (the broker then answers
   * `token-broker`). So the choice is checked here: it must be one of them (RFC 6455 §4.1), or the page's
   * browser would fail.
   */
  const attempt = (
    url: string,
    protocols: string[],
    headers: Record<string, string | string[]>,
    tlsClient: TlsClientIdentity | undefined,
  ) =>
    new Promise<Attempt>((resolve) => {
      const socket = new HandedOverSocket(url, {
        ...relaySocketOptions,
        // As the HTTP proxy does: the certificate a mutual-TLS token was obtained with (RFC 8705 §3).
        ...(tlsClient ? { secureContext: tlsClient.secureContext } : {}),
        headers:
          protocols.length > 0 ? { ...headers, 'sec-websocket-protocol': protocols.join(', ') } : headers,
        handshakeTimeout: handshakeTimeoutMs,
        followRedirects: false,
      });
      let selected: string | undefined;
      // Emitted before ws checks the answer: the selection is taken out, to be checked here instead.
      socket.once('upgrade', (response) => {
        const header = response.headers['sec-websocket-protocol'];
        selected = typeof header === 'string' ? header.trim() : undefined;
        delete response.headers['sec-websocket-protocol'];
      });
      socket.once('open', () => {
        const raw = socket.raw as RawSocket;
        if (selected === undefined || protocols.includes(selected)) {
          resolve({ socket: raw, protocol: selected });
          return;
        }
        raw.socket.destroy();
        resolve({ error: new Error('the API selected a protocol the page did not offer') });
      });
      socket.once('unexpected-response', (request, response) => {
        response.resume();
        request.destroy();
        resolve({ status: response.statusCode ?? 502 });
      });
      // Once settled, this only keeps a late error from being thrown; the relay listens for its own.
      socket.on('error', (error) => resolve({ error }));
    });

  return {
    async connect(req, request, protocols) {
      const target = upstreamTarget(base, request.path);
      // A query credential replaces any the client sent under that name, as for HTTP.
      const urlWith = (accessToken: string) =>
        placement?.in === 'query'
          ? `${wsOrigin}${target.pathname}?${queryWithCredential(clientQuery(target), placement.param, accessToken)}`
          : `${wsOrigin}${target.path}`;
      // The HTTP proxy's own header rules (credentials, cookies, hop-by-hop and forwarding fields).
      const headersWith = (accessToken: string) => {
        const headers: Record<string, string | string[]> = {};
        const forwarded = upstreamRequestHeaders(req.headers, {
          accessToken,
          clientIp: request.clientIp,
          forwardedFor: request.forwardedFor,
          protocol: request.protocol,
          host: request.host ?? req.headers.host,
        });
        if (placement) placeCredential(placement, forwarded, accessToken);
        for (const [name, value] of Object.entries(forwarded)) {
          if (value !== undefined && !handshakeFields.test(name)) headers[name] = value as string | string[];
        }
        return headers;
      };
      const send = ({ accessToken, tlsClient }: Pick<UpstreamToken, 'accessToken' | 'tlsClient'>) =>
        attempt(urlWith(accessToken), protocols, headersWith(accessToken), tlsClient);
      const token = await credentials.get();
      let result = await send(token);
      if ('status' in result && credentials.refused !== undefined) {
        if (result.status === 401 || result.status === 403) credentials.refused(result.status);
      } else if ('status' in result && result.status === 401) {
        await credentials.invalidate(token.accessToken);
        const renewed = await credentials.get();
        if (renewed.accessToken !== token.accessToken) result = await send(renewed);
      }
      if ('socket' in result) return { socket: result.socket, protocol: result.protocol };
      if ('status' in result) {
        throw new BrokerError('websocket_refused', {
          detail: `the API answered ${result.status} to the WebSocket handshake`,
        });
      }
      if (/timed out/i.test(result.error.message)) {
        throw new BrokerError('upstream_timeout', { cause: result.error });
      }
      throw new BrokerError('upstream_unavailable', { cause: result.error, headers: { 'Retry-After': '1' } });
    },
  };
}
