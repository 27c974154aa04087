import { ipMatches } from '../../caller/ip.js';
import { requestOrigin } from '../../caller/origins.js';
import type { CallerReader } from '../../caller/requestCaller.js';
import type { Config } from '../../config/index.js';
import { type DpopProofVerifier, dpopChallenge } from '../../dpop/proof.js';
import { BrokerError } from '../../errors.js';
import type { ClientTokenClaims, ClientTokens } from '../../signing/clientTokens.js';
import { type BrokerRequest, type Handler, headerValue } from '../dispatch/handler.js';
import { requestUrl } from '../requestUrl.js';
import { bearerToken } from './apiKeyAuth.js';

/** `Authorization: DPoP <token>` (RFC 9449 §7.1); the scheme is case-insensitive (RFC 9110 §11.1). */
const dpopScheme = /^DPoP[ ]+([^\s]+)\s*$/i;

/**
 * Admits a request only with a valid client token used from where it was issued: the token's
 * signature, lifetime and revocation (clientTokens.verify), then the browser-written origin, then the
 * caller's address. Each failure has its own code, so the browser helper knows whether a new token can
 * help (`ip_mismatch` after a network change) or not (`origin_mismatch`). A token bound to a DPoP key
 * (`cnf.jkt`) also needs a fresh proof by that key for this very request (RFC 9449 §7.1).
 */
export function verifyClientToken({
  clientTokens,
  dpop,
  config,
  caller,
  admit,
}: {
  clientTokens: ClientTokens;
  caller: CallerReader;
  dpop: DpopProofVerifier;
  config: Pick<Config, 'publicUrl'>;
  /** A further check of the claims (a proxy mount's upstream), run before a DPoP proof is remembered. */
  admit?: ((claims: ClientTokenClaims, req: BrokerRequest) => void) | undefined;
}): Handler {
  return async (req, res, next) => {
    const header = req.headers['x-client-token'];
    const bearer = bearerToken(req);
    const dpopToken = dpopScheme.exec(req.headers.authorization ?? '')?.[1];
    const token = bearer ?? dpopToken ?? (typeof header === 'string' ? header.trim() : undefined);
    if (!token) {
      throw new BrokerError('invalid_client_token', {
        detail: 'send the client token as Authorization: Bearer <token> or x-client-token',
        // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
        headers: { 'WWW-Authenticate': 'Bearer realm="token-broker"' },
      });
    }
    const claims = await clientTokens.verify(token);
    // Origin, address and `admit` first: a proof is remembered only for a request that passed every other
    // check, so a stolen token used from elsewhere cannot fill the replay cache.
    // A browser sends the origin exactly as the token holds it (normalised): then it needs no parsing.
    const sent = req.headers.origin;
    const origin = sent === claims.origin ? sent : requestOrigin(req.headers);
    if (origin !== claims.origin) {
      throw new BrokerError('origin_mismatch', {
        detail: origin ? 'the token was issued for another origin' : 'no Origin or Referer header',
      });
    }
    if (claims.ip !== undefined && !ipMatches({ ip: claims.ip, prefix: claims.ipPrefix }, caller.ip(req))) {
      throw new BrokerError('ip_mismatch', { detail: 'the token was issued for another network address' });
    }
    admit?.(claims, req);
    const jkt = claims.cnf?.jkt;
    if (jkt !== undefined || dpopToken !== undefined) {
      const refuse = (detail: string) =>
        new BrokerError('invalid_dpop_proof', { detail, headers: { 'WWW-Authenticate': dpopChallenge } });
      // As a bearer token, a bound token would be usable without the key: it is refused (RFC 9449 §7.2).
      if (bearer !== undefined) throw refuse('a DPoP-bound token is sent as Authorization: DPoP <token>');
      if (jkt === undefined) throw refuse('this token is not bound to a DPoP key; send it as Bearer');
      await dpop.verify({
        proof: headerValue(req, 'dpop'),
        method: req.method ?? '',
        url: requestUrl(req, caller, config.publicUrl),
        endpoint: 'resource',
        accessToken: token,
        jkt,
      });
    }
    res.locals.clientToken = claims;
    next();
  };
}
