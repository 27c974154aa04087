import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorCode } from '../../errors.js';
import type { ClientTokenClaims } from '../../signing/clientTokens.js';
import type { Logger } from '../../telemetry/logger.js';
import type { RouteName } from './routeMatcher.js';

/** What the layers of one request leave for the later ones (Express keeps the same object as `res.locals`). */
export interface RequestLocals {
  /** The route the request was matched to, set once by the listener (directRoutes.ts) in both lanes. */
  route?: RouteName | undefined;
  requestId?: string;
  /** The request's child logger, made when first read (requestContext.ts). */
  log?: Logger;
  /** The upstream a proxied request is for: a configured name, never client input. */
  upstream?: string;
  /** The verified client token of a proxied request. */
  clientToken?: ClientTokenClaims;
  /** The problem code of an error answer, for the metrics. */
  problemCode?: ErrorCode;
  /** What the error answered adds to the access line (BrokerError `logged`). */
  problemLogged?: Readonly<Record<string, string | number>> | undefined;
  /** A probe polled without end (`/healthz`, `/readyz`): its access line is written at `debug`. */
  probe?: boolean;
}

/** A request as both lanes hand it on: `originalUrl` is the target as received, before a mount strips `url`. */
export type BrokerRequest = IncomingMessage & { originalUrl?: string };
export type BrokerResponse = ServerResponse & { locals: RequestLocals };
export type Next = (error?: unknown) => void;

/**
 * A middleware written against `node:http` alone, so that it runs both in the direct lane
 * (directRoutes.ts) and under Express, whose request and response extend the same classes.
 */
export type Handler = (req: BrokerRequest, res: BrokerResponse, next: Next) => void | Promise<void>;

/** A request header as Node hands it over: one string, repeated fields joined (only `Set-Cookie` differs). */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
