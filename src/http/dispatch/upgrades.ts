import { type IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BrokerError } from '../../errors.js';
import type { ErrorHandler } from '../problem.js';
import type { RequestListener } from './directRoutes.js';
import type { BrokerRequest, BrokerResponse, Handler, RequestLocals } from './handler.js';
import { type DirectRoute, directTargetFor, directTargets } from './routeMatcher.js';
import { sequence } from './sequence.js';

/** The `upgrade` listener of an `http.Server` (RFC 9110 §7.8). */
export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface UpgradeRoutesOptions {
  /** Serves, as a plain request, whatever is not a WebSocket handshake on a mount. */
  app: RequestListener;
  /** The same first layers as every request. */
  common: Handler[];
  /** Handshake chains by mount, matched as the direct lane matches them; `req.url` is left relative. */
  mounts: { mount: string; chain: Handler[] }[];
  onError: ErrorHandler;
}

/**
 * Serves the requests Node hands to `upgrade` rather than `request`. A WebSocket handshake under a mount
 * runs that mount's chain with a response bound to the socket, so a refusal is the same problem+json
 * answer (with `Connection: close`) a plain request gets; the chain's last step takes the socket over
 * (it detaches the response first). Anything else (another protocol, another path) is answered by the
 * app as a plain request, as Node would without this listener.
 */
export function upgradeRoutes({ app, common, mounts, onError }: UpgradeRoutesOptions): UpgradeListener {
  // Matched as the direct lane matches the proxy's plain targets (routeMatcher.ts).
  const routes = directTargets(
    mounts.map(
      ({ mount, chain }): DirectRoute => ({
        name: 'proxy',
        methods: ['GET'],
        path: mount,
        match: 'mount',
        lane: 'direct',
        chain,
      }),
    ),
  ).map((target) => {
    const { path } = target.route;
    const strip: Handler = (req, _res, next) => {
      req.url = (req.url ?? '').slice(path.length);
      next();
    };
    return { ...target, run: sequence([...common, strip, ...target.route.chain]) };
  });
  return (req, socket, head) => {
    // Until the chain hands the socket over (or the answer is written), a reset must not throw.
    socket.on('error', () => socket.destroy());
    if (head.length > 0) socket.unshift(head);
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as IncomingMessage['socket']);
    res.once('finish', () => socket.end());
    const url = req.url ?? '';
    const websocket = (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    // Any method: a handshake that is not a GET is refused by the chain, as problem+json.
    const route = websocket ? directTargetFor(routes, url, 'GET') : undefined;
    if (route === undefined) {
      app(req, res);
      return;
    }
    const request: BrokerRequest = req;
    request.originalUrl = url;
    const response = res as BrokerResponse;
    response.locals = Object.create(null) as RequestLocals;
    response.locals.route = route.route.name;
    route.run(request, response, (error) => {
      try {
        onError(error ?? new BrokerError('not_found'), request, response);
      } catch {
        socket.destroy();
      }
    });
  };
}
