import { BrokerError } from '../../errors.js';
import type { Handler } from '../dispatch/handler.js';
import { sendProblem } from '../problem.js';

/**
 * Ends a request whose body stops arriving for `idleMs`: `408 request_timeout` when nothing was answered
 * yet (with `Connection: close`, RFC 9110 §15.5.9), else the connection is cut. Node's own
 * `requestTimeout` bounds the whole request (5 minutes); this bounds the silences in it, so an upload that
 * never finishes cannot hold a connection, a body parser or a proxied exchange for long. The socket's
 * `data` events are watched rather than the request's, so the body stream itself is left untouched; a
 * silence while the broker itself is not reading the body does not count.
 */
export function bodyIdleTimeout(idleMs: number): Handler {
  return (req, res, next) => {
    const declared = req.headers['content-length'];
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0');
    if (!hasBody || req.complete) {
      next();
      return;
    }
    const { socket } = req;
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      socket.off('data', arm);
      req.off('end', stop);
      req.off('close', stop);
    };
    const onIdle = () => {
      // Back-pressure, not the client: body data waits unread in the request, so the broker is the slow
      // reader and Node has stopped reading the socket. The consumer's own deadline bounds that.
      if (req.readableLength > 0) {
        arm();
        return;
      }
      stop();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.setHeader('Connection', 'close');
      // Once answered, the request is over: whoever still waits on its body (a body parser, a proxied
      // exchange) sees it end now instead of at its own deadline.
      res.once('finish', () => req.destroy());
      sendProblem(
        res,
        new BrokerError('request_timeout', {
          detail: `the request body stalled for more than ${idleMs} ms; send it without long pauses`,
        }),
      );
    };
    function arm() {
      clearTimeout(timer);
      timer = setTimeout(onIdle, idleMs);
    }
    socket.on('data', arm);
    req.once('end', stop);
    req.once('close', stop);
    arm();
    next();
  };
}
