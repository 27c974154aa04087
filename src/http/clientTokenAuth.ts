import type { RequestHandler } from 'express';
import { BrokerError } from '../errors.js';
import { ipMatches } from '../ip.js';
import { requestOrigin } from '../origins.js';
import type { ClientTokens } from '../signing/clientTokens.js';
import { bearerToken } from './apiKeyAuth.js';
import { callerIp } from './callerIp.js';

/**
 * Admits a request only with a valid client token used from where it was issued: the token's
 * signature, lifetime and revocation (clientTokens.verify), then the browser-written origin, then the
 * caller's address. Each failure has its own code, so the browser helper knows whether a new token can
 * help (`ip_mismatch` after a network change) or not (`origin_mismatch`).
 */
export function verifyClientToken({ clientTokens }: { clientTokens: ClientTokens }): RequestHandler {
  return async (req, res, next) => {
    const header = req.headers['x-client-token'];
    const token = bearerToken(req) ?? (typeof header === 'string' ? header.trim() : undefined);
    if (!token) {
      throw new BrokerError('invalid_client_token', {
        detail: 'send the client token as Authorization: Bearer <token> or x-client-token',
        // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
        headers: { 'WWW-Authenticate': 'Bearer realm="token-broker"' },
      });
    }
    const claims = await clientTokens.verify(token);
    const origin = requestOrigin(req.headers);
    if (origin !== claims.origin) {
      throw new BrokerError('origin_mismatch', {
        detail: origin ? 'the token was issued for another origin' : 'no Origin or Referer header',
      });
    }
    if (claims.ip !== undefined && !ipMatches({ ip: claims.ip, prefix: claims.ipPrefix }, callerIp(req))) {
      throw new BrokerError('ip_mismatch', { detail: 'the token was issued for another network address' });
    }
    res.locals.clientToken = claims;
    next();
  };
}
