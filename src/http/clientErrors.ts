import { maxHeaderSize } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BrokerError, type ErrorCode } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { rawProblem } from './problem.js';

/** A server's `clientError` listener (`server.on('clientError', broker.clientError)`). */
export type ClientErrorListener = (error: Error & { code?: string }, socket: Duplex) => void;

const answerTo = (code: ErrorCode, detail: string) => ({
  code,
  response: rawProblem(new BrokerError(code, { detail })),
});

/** Node's own statuses for what its parser and timeouts refuse, each with the broker's code. */
const answers = {
  HPE_HEADER_OVERFLOW: answerTo(
    'headers_too_large',
    `the request line and headers are larger than ${maxHeaderSize} bytes`,
  ),
  HPE_CHUNK_EXTENSIONS_OVERFLOW: answerTo('payload_too_large', 'the chunk extensions are too large'),
  // `headersTimeout` (IDLE_SOCKET_TIMEOUT_MS) and `requestTimeout` alike.
  ERR_HTTP_REQUEST_TIMEOUT: answerTo(
    'request_timeout',
    'the request did not arrive in time (its headers within IDLE_SOCKET_TIMEOUT_MS, or the whole of it); the connection is closed',
  ),
} as const satisfies Record<string, { code: ErrorCode; response: string }>;
const malformed = answerTo('invalid_request', 'the request is not valid HTTP/1.1');

/**
 * Answers what Node's HTTP parser or its timeouts refuse before any request reaches the app (an
 * oversized header block, a malformed request line or header, a chunked body that is not, headers too
 * slow) with the broker's problem+json and status, in place of Node's bare answers, then closes the
 * connection: one warning line (the code, the parser's reason and the peer address; never the bytes,
 * which hold the headers) and the refusals metric under route `none`. No request was read, so none of
 * the app's steps ran: no request id, no access line, no rate-limit count. Node's own choice is kept
 * where no answer can be written: a reset connection, or one whose answer has begun, is only destroyed.
 */
export function clientErrorListener({
  logger,
  metrics,
}: {
  logger: Logger;
  metrics: Metrics;
}): ClientErrorListener {
  return (error, duplex) => {
    // Node hands every server's `net.Socket` (a `tls.TLSSocket` is one too) as a Duplex.
    const socket = duplex as Socket;
    // Node's `_httpMessage`: the response in flight on this socket; once its head is sent, a second
    // status line would corrupt the stream (Node's default handler checks the same).
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const { code, response } = answers[error.code as keyof typeof answers] ?? malformed;
    // A connection that sent nothing made no request (a browser's unused preconnection): it is told
    // the same 408, but neither warned about nor counted.
    const sentNothing = socket.bytesRead === 0;
    if (!sentNothing) metrics.recordRefusal(code, 'none');
    logger[sentNothing ? 'debug' : 'warn'](
      { code, errorCode: error.code, remoteAddress: socket.remoteAddress },
      'a request was refused before it was read',
    );
    socket.end(response);
    socket.destroySoon();
  };
}
