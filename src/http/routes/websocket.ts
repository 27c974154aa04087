import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';
import type { CallerReader } from '../../caller/requestCaller.js';
import { BrokerError } from '../../errors.js';
import { HandedOverSocket, type RawSocket } from '../../proxy/socketHandover.js';
import { type ApiSocket, relaySocketOptions, type WebSocketForwarder } from '../../proxy/websocketForward.js';
import {
  brokerProtocol,
  type ProtocolOffer,
  readProtocolOffer,
  refuseQueryToken,
} from '../../proxy/websocketProtocols.js';
import { relaySockets } from '../../proxy/websocketRelay.js';
import type { WebSocketSessions } from '../../proxy/websocketSessions.js';
import type { ClientTokenClaims } from '../../signing/clientTokens.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Handler } from '../dispatch/handler.js';
import { splitTarget } from '../dispatch/routeMatcher.js';

export interface WebSocketRouteDeps {
  sessions: WebSocketSessions;
  caller: CallerReader;
  logger: Logger;
}

/** The steps of a WebSocket handshake around the proxy's own checks (see proxyRoutes). */
export interface WebSocketSteps {
  /** First: the handshake's shape, no token in the query, and the token from `Sec-WebSocket-Protocol`. */
  handshake: Handler;
  /** Joins verifyClientToken's `admit`: refuses what a socket cannot do. */
  admit: (claims: ClientTokenClaims) => void;
  /** Last: opens the API's side, then answers 101 and relays until either side closes. */
  accept: (forwarder: WebSocketForwarder) => Handler;
}

/** RFC 6455 §4.1: 16 random bytes, base64. */
const keyPattern = /^[A-Za-z0-9+/]{22}==$/;

/**
 * WebSockets on `/api/proxy[/<name>]/*`. The handshake runs every check a proxied call gets, in the same
 * chain: per-IP rate limit, the client token (signature, lifetime, revocation, origin, address,
 * upstream), each refusal answered as problem+json before any upgrade. The token comes from the offered
 * subprotocol `token-broker.bearer.<token>` (websocketProtocols.ts), never from a header or the query.
 */
export function websocketSteps({ sessions, caller, logger }: WebSocketRouteDeps): WebSocketSteps {
  const offers = new WeakMap<IncomingMessage, ProtocolOffer & { selected?: string }>();
  const server = new WebSocketServer({
    noServer: true,
    ...relaySocketOptions,
    // ws makes and checks the handshake, then hands the socket over to the relay.
    WebSocket: HandedOverSocket,
    // Its sockets never emit `close`: a tracked one would never be let go.
    clientTracking: false,
    // The API chose first (accept() asked it); a page whose protocols it took none of gets `token-broker`,
    // since a browser fails a handshake that names no protocol it offered (RFC 6455 §4.1).
    handleProtocols: (_offered, req) => offers.get(req)?.selected ?? brokerProtocol,
  });

  const handshake: Handler = (req, _res, next) => {
    if (req.method !== 'GET') {
      throw new BrokerError('method_not_allowed', {
        detail: 'a WebSocket handshake is a GET (RFC 6455 §4.1)',
      });
    }
    if (
      req.headers['sec-websocket-version'] !== '13' ||
      !keyPattern.test(req.headers['sec-websocket-key'] ?? '')
    ) {
      throw new BrokerError('invalid_request', {
        detail: 'a WebSocket handshake needs Sec-WebSocket-Version: 13 and a valid Sec-WebSocket-Key',
      });
    }
    const target = splitTarget(req.url ?? '/').path;
    const queryAt = target.indexOf('?');
    refuseQueryToken(queryAt === -1 ? undefined : target.slice(queryAt + 1));
    const offer = readProtocolOffer(req.headers['sec-websocket-protocol']);
    offers.set(req, offer);
    // verifyClientToken reads it from here: no other place may carry a token on a socket.
    delete req.headers.authorization;
    req.headers['x-client-token'] = offer.token;
    next();
  };

  const admit = (claims: ClientTokenClaims) => {
    if (claims.cnf !== undefined) {
      throw new BrokerError('invalid_dpop_proof', {
        detail: 'a DPoP-bound client token cannot open a WebSocket: a browser cannot send a proof with it',
      });
    }
  };

  const accept =
    (forwarder: WebSocketForwarder): Handler =>
    async (req, res) => {
      const claims = res.locals.clientToken as ClientTokenClaims;
      const offer = offers.get(req) as ProtocolOffer & { selected?: string };
      const started = performance.now();
      const slot = sessions.reserve(claims);
      const path = splitTarget(req.url ?? '/').path;
      let opening: ApiSocket;
      try {
        opening = await forwarder.connect(
          req,
          {
            path,
            clientIp: caller.ip(req),
            forwardedFor: caller.forwardedFor(req),
            protocol: caller.protocol(req),
            host: caller.host(req),
          },
          offer.forwarded,
        );
      } catch (error) {
        slot.release();
        throw error;
      }
      const { socket } = req;
      const api = opening.socket;
      if (socket.destroyed) {
        slot.release();
        api.socket.destroy();
        return;
      }
      offer.selected = opening.protocol;
      res.detachSocket(socket);
      const log = res.locals.log ?? logger;
      const upstreamPath = path.split('?')[0];
      let closedBy: number | undefined;
      let opened = false;
      // ws destroys a socket that went away meanwhile without calling back: the API side goes with it.
      socket.once('close', () => {
        if (opened) return;
        slot.release();
        api.socket.destroy();
      });
      server.handleUpgrade(req, socket, Buffer.alloc(0), (client) => {
        opened = true;
        const close = relaySockets((client as HandedOverSocket).raw as RawSocket, api, ({ by, code }) => {
          slot.release();
          log.info(
            {
              upstreamPath,
              by: closedBy === undefined ? by : 'broker',
              code: closedBy ?? code,
              durationMs: Math.round(performance.now() - started),
            },
            'websocket closed',
          );
        });
        slot.open((code, reason) => {
          closedBy = code;
          close(code, reason);
        });
        log.info({ upstreamPath, protocol: client.protocol }, 'websocket opened');
      });
    };

  return { handshake, admit, accept };
}
