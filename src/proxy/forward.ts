import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { trace } from '@opentelemetry/api';
import { type Dispatcher, Pool } from 'undici';
import { type Clock, systemClock } from '../clock.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import { spanAttributes } from '../telemetry/spans.js';
import { createTlsDispatchers } from '../upstream/tlsDispatchers.js';
import type { CredentialSource, UpstreamToken } from '../upstream/types.js';
import {
  type CredentialPlacement,
  placeCredential,
  queryWithCredential,
  scrubResponseHeaders,
} from './credentialPlacement.js';
import { exchangeAbort } from './exchangeAbort.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { relayBody } from './relayBody.js';
import { createRenewalGate } from './renewalGate.js';
import { ClientGoneError, type OutgoingBody, prepareBody } from './requestBody.js';
import { acceptsStream, isStream, relayStream } from './streamRelay.js';
import { clientQuery, parseApiUrl, upstreamTarget } from './targetUrl.js';
import { DeadlineError, errorCode, failureBeforeHeaders } from './upstreamFailure.js';

/** Bounds on every exchange with the API, so no request through the proxy can hang. */
export interface ProxyTimeouts {
  /** Opening a connection (TCP and TLS). */
  connectMs: number;
  /** From sending the request to receiving the API's response headers. */
  headersMs: number;
  /** Longest silence between two chunks of the API's response body. */
  bodyMs: number;
  /**
   * Whole exchange, upload and download included: cuts an API (or a client) that drips bytes just often
   * enough to beat `bodyMs` forever. Choose it above the longest legitimate transfer.
   */
  totalMs: number;
  /**
   * An event stream (server-sent events, NDJSON) asked for by the client and answered by the API is bounded
   * by `totalMs` only until its headers arrive; after that, it is closed once silent this long (default 60 s).
   */
  streamIdleMs?: number;
}

export interface ProxyForwarderOptions {
  /** `UPSTREAM_API_URL`: requests go to its origin, under its path. */
  apiUrl: string;
  /** The upstream's token cache, or its static API key. */
  credentials: CredentialSource;
  /** Where the API reads the credential (`UPSTREAM_CREDENTIAL_IN`); `Authorization: Bearer` by default. */
  credentialIn?: CredentialPlacement | undefined;
  logger: Logger;
  timeouts: ProxyTimeouts;
  /**
   * Largest request body held in memory so that it can be sent again after a 401 (default 64 KiB).
   * A larger body is streamed to the API as it arrives; a 401 to it is passed through, not retried.
   */
  maxReplayBytes?: number;
  /** Sends the requests; by default a keep-alive `Pool` to the API's origin that `close()` closes. */
  dispatcher?: Dispatcher;
  /** Times the renewal cool-down; the system clock by default. */
  clock?: Clock;
  /**
   * After a 401 made the broker drop an upstream token, a 401 to another token within this time is passed
   * through without renewing (default 5 s): an API that refuses every token costs one token request per
   * cool-down, not one per proxied request (see renewalGate.ts).
   */
  renewalCooldownMs?: number;
}

/** What the app knows about one proxied request once the client token was verified. */
export interface ForwardRequest {
  /** The raw request target after `/api/proxy`, query included, never decoded: `/things/1?x=1`. */
  path: string;
  /** The caller's address under `trust proxy`. */
  clientIp: string;
  /** The trusted `x-forwarded-for` chain, client first; `clientIp` alone by default. */
  forwardedFor?: string[] | undefined;
  /** `http` or `https` as the caller reached the broker (`x-forwarded-proto`). */
  protocol: string;
  /** The host the caller addressed (`x-forwarded-host`); defaults to the `host` header. */
  host?: string | undefined;
  /** The request's child logger; read only when a line is written, as it may be made on first read. */
  readonly log: Logger;
}

export interface ProxyForwarder {
  /**
   * Sends the request to the API with the upstream access token and streams the answer back. Resolves
   * once the answer was sent, cut or abandoned by the client; rejects with a BrokerError only while no
   * header was sent: `invalid_request` (unsafe path), `method_not_allowed` (TRACE, TRACK, CONNECT),
   * `upstream_unavailable` 503 with `Retry-After: 1` (refused, reset or closed before the headers),
   * `upstream_timeout` 504 (connect, headers or total deadline), or what `credentials.get()` throws.
   */
  forward(req: IncomingMessage, res: ServerResponse, request: ForwardRequest): Promise<void>;
  /** Closes the connection pools it created, after in-flight requests finish. */
  close(): Promise<void>;
  /** How the API took the latest call that reached it, for `/readyz?verbose`; undefined before any. */
  lastCall(): ApiCallStatus | undefined;
}

/** The API answered (with its status), or did not (with the problem code the client got); `at` in ms since epoch. */
export type ApiCallStatus =
  | { answered: true; status: number; at: number }
  | { answered: false; code: string; at: number };

// TRACE echoes the request, our bearer token included, back to the browser (RFC 9110 §9.3.8).
const refusedMethods = new Set(['TRACE', 'TRACK', 'CONNECT']);

/** Sets the API's headers on the response; `Vary` is merged with the broker's own (CORS sets `Origin`). */
function copyHeaders(res: ServerResponse, headers: ReturnType<typeof downstreamResponseHeaders>): void {
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const prior = name === 'vary' ? res.getHeader('vary') : undefined;
    res.setHeader(
      name,
      prior === undefined ? value : `${[prior].flat().join(', ')}, ${[value].flat().join(', ')}`,
    );
  }
}

/**
 * The forwarding half of `ALL /api/proxy/*`, run after the client token was verified.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-7.6
 */
export function createProxyForwarder(options: ProxyForwarderOptions): ProxyForwarder {
  const { credentials, timeouts: limits } = options;
  // Undefined for `Authorization: Bearer`: the forwarder does then exactly what it did before placements.
  const placement = options.credentialIn?.in === 'authorization' ? undefined : options.credentialIn;
  const base = parseApiUrl(options.apiUrl);
  const maxReplayBytes = options.maxReplayBytes ?? 64 * 1024;
  const streamIdleMs = limits.streamIdleMs ?? 60_000;
  const renewals = createRenewalGate({
    clock: options.clock ?? systemClock,
    cooldownMs: options.renewalCooldownMs ?? 5_000,
  });
  const ownPool = options.dispatcher
    ? undefined
    : new Pool(base.origin, {
        connect: { timeout: limits.connectMs },
        headersTimeout: limits.headersMs,
        bodyTimeout: limits.bodyMs,
      });
  const dispatcher: Dispatcher = options.dispatcher ?? (ownPool as Pool);
  // A token obtained by mutual TLS may be bound to the certificate (RFC 8705 §3): the API is offered the
  // same one. TLS sends it only if the API's server asks for a certificate, so an API that does not sees nothing.
  const tlsPools = createTlsDispatchers(
    (identity) =>
      new Pool(base.origin, {
        connect: { timeout: limits.connectMs, secureContext: identity.secureContext },
        headersTimeout: limits.headersMs,
        bodyTimeout: limits.bodyMs,
      }),
  );
  // Scalars, not an object per call: the start instant (performance.now()) each request already has.
  let answeredAt = Number.NEGATIVE_INFINITY;
  let answeredStatus = 0;
  let failedAt = Number.NEGATIVE_INFINITY;
  let failedCode = '';

  async function forward(req: IncomingMessage, res: ServerResponse, request: ForwardRequest): Promise<void> {
    const started = performance.now();
    const method = (req.method ?? 'GET').toUpperCase();
    if (refusedMethods.has(method)) throw new BrokerError('method_not_allowed');
    const target = upstreamTarget(base, request.path);
    // A stream's chunks may be minutes apart: undici's gap limit is off, and the relay sets its own.
    const streamAsked = acceptsStream(req.headers.accept);

    const controller = exchangeAbort();
    const deadline = setTimeout(() => controller.abort(new DeadlineError()), limits.totalMs);
    // Set when the API's body fails, so that the response closing in consequence is not blamed on the client.
    let upstreamFailed = false;
    const onClose = () => {
      if (!res.writableFinished && !upstreamFailed) controller.abort(new ClientGoneError());
    };
    res.on('close', onClose);

    const send = (
      { accessToken, tlsClient }: Pick<UpstreamToken, 'accessToken' | 'tlsClient'>,
      body: OutgoingBody,
    ) => {
      const headers = upstreamRequestHeaders(req.headers, {
        accessToken,
        clientIp: request.clientIp,
        forwardedFor: request.forwardedFor,
        protocol: request.protocol,
        host: request.host ?? req.headers.host,
      });
      if (!body.replayable && body.contentLength !== undefined) {
        headers['content-length'] = body.contentLength;
      }
      if (placement) placeCredential(placement, headers, accessToken);
      // A compressing API may hold events back until a block fills.
      if (streamAsked) headers['accept-encoding'] = 'identity';
      return (tlsClient ? tlsPools.for(tlsClient) : dispatcher).request({
        origin: base.origin,
        path:
          placement?.in === 'query'
            ? `${target.pathname}?${queryWithCredential(clientQuery(target), placement.param, accessToken)}`
            : target.path,
        method: method as Dispatcher.HttpMethod,
        headers: headers as Record<string, string | string[]>,
        body: body.replayable ? body.bytes : body.stream,
        signal: controller.upstream,
        headersTimeout: limits.headersMs,
        bodyTimeout: streamAsked ? 0 : limits.bodyMs,
      });
    };

    let response: Dispatcher.ResponseData | undefined;
    let body: OutgoingBody | undefined;
    try {
      body = await prepareBody(req, maxReplayBytes, controller.signal);
      let token = await credentials.get();
      response = await send(token, body);
      let retried = false;
      if (credentials.refused !== undefined) {
        if (response.statusCode === 401 || response.statusCode === 403)
          credentials.refused(response.statusCode);
      } else if (response.statusCode === 401) {
        const refused = token.accessToken;
        // The API refused a token we believed valid: drop it, unless another request already replaced it
        // or the API refused another token moments ago (then it refuses tokens, not this one).
        if (renewals.mayInvalidate(refused)) await credentials.invalidate(refused);
        if (body.replayable) {
          token = await credentials.get();
          // Sending the refused token again would only earn the same 401: that one is the answer.
          if (token.accessToken !== refused) {
            await response.body.dump();
            response = await send(token, body);
            retried = true;
            // The proxied call's span, when tracing is on (routes/proxy.ts); off, there is none.
            trace.getActiveSpan()?.setAttribute(spanAttributes.retried, true);
            if (response.statusCode === 401) {
              // Not invalidated again: an API that refuses every token must not make us renew on each request.
              request.log.warn({ upstreamPath: target.pathname }, 'the API refused a freshly renewed token');
            }
          }
        }
      }
      answeredAt = started;
      answeredStatus = response.statusCode;
      res.statusCode = response.statusCode;
      const answerHeaders = downstreamResponseHeaders(response.headers);
      if (placement?.in === 'query') scrubResponseHeaders(answerHeaders, placement.param, token.accessToken);
      copyHeaders(res, answerHeaders);
      response.body.once('error', () => {
        upstreamFailed = true;
      });
      if (streamAsked) {
        await relayAsked(response, res, controller.signal, () => clearTimeout(deadline));
      } else {
        await relayBody(response.body, res, controller.signal);
      }
      if (options.logger.isLevelEnabled('debug')) {
        request.log.debug(
          {
            method,
            upstreamPath: target.pathname,
            status: response.statusCode,
            retried,
            durationMs: elapsed(started),
          },
          'proxied request',
        );
      }
    } catch (error) {
      response?.body.destroy();
      const reason =
        controller.signal.reason instanceof ClientGoneError
          ? 'client closed'
          : res.headersSent
            ? 'failed mid-answer'
            : req.socket.destroyed
              ? 'client closed'
              : undefined;
      if (reason === undefined) {
        // Read and drop what the client is still uploading, so it gets to read the answer: a streamed body
        // that never reached the API is destroyed first (which unpipes it), or it would pause the upload again.
        if (body?.replayable === false) body.stream.destroy();
        if (!req.complete) req.resume();
        const failure = failureBeforeHeaders(error, controller.signal);
        // A BrokerError thrown as such came from the token cache or the body, before the API was asked.
        if (!(error instanceof BrokerError) && failure instanceof BrokerError) {
          failedAt = started;
          failedCode = failure.code;
        }
        throw failure;
      }
      // Nobody to answer, or the status line is already gone: cutting the connection is the only signal left.
      res.destroy();
      request.log[reason === 'client closed' ? 'debug' : 'warn'](
        {
          method,
          upstreamPath: target.pathname,
          status: response?.statusCode,
          reason,
          errorCode: errorCode(error),
          durationMs: elapsed(started),
        },
        'proxied request abandoned',
      );
    } finally {
      clearTimeout(deadline);
      res.off('close', onClose);
    }
  }

  /**
   * The answer to a client that asked for a stream: a stream is bounded by the total deadline only until
   * its headers, then by its own silence; any other answer by the usual gap between chunks.
   */
  async function relayAsked(
    response: Dispatcher.ResponseData,
    res: ServerResponse,
    signal: AbortSignal,
    endDeadline: () => void,
  ): Promise<void> {
    const stream = isStream(response.headers);
    if (stream) {
      endDeadline();
      // Reverse proxies in front of the broker (nginx) would otherwise buffer the events.
      if (!res.hasHeader('x-accel-buffering')) res.setHeader('x-accel-buffering', 'no');
    }
    await relayStream(
      response.body,
      res,
      signal,
      stream ? streamIdleMs : limits.bodyMs,
      stream ? 'end' : 'cut',
    );
  }

  return {
    forward,
    close: async () => {
      await Promise.all([ownPool?.close(), tlsPools.close()]);
    },
    lastCall() {
      const latest = Math.max(answeredAt, failedAt);
      if (latest === Number.NEGATIVE_INFINITY) return undefined;
      const at = Math.round(performance.timeOrigin + latest);
      return answeredAt >= failedAt
        ? { answered: true, status: answeredStatus, at }
        : { answered: false, code: failedCode, at };
    },
  };
}

/** The client's query, raw and without its "?"; undefined when it sent none. */
function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
