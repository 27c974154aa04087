import type { PowProvider } from '../../attestation/pow.js';
import type { OriginPolicy } from '../../caller/origins.js';
import { BrokerError } from '../../errors.js';
import type { Handler } from '../dispatch/handler.js';
import { sendToken } from '../tokenResponse.js';
import { pageOrigin } from './clientToken.js';

/**
 * `GET`/`POST /api/client-token/challenge` with `CLIENT_TOKEN_ATTESTATION=pow`: a fresh ALTCHA challenge bound to
 * the page's origin, as its widget's `challengeurl` expects it (`{parameters, signature}`). Never stored:
 * each one buys one token.
 */
export function attestationChallengeHandler({
  originPolicy,
  pow,
}: {
  originPolicy: OriginPolicy;
  pow: PowProvider;
}): Handler {
  return async (req, res) => {
    // POST too: a same-origin GET carries no `Origin`, and a page without a `Referer` would be unknown.
    if (req.method !== 'GET' && req.method !== 'POST') {
      res.setHeader('Allow', 'GET, POST, OPTIONS');
      throw new BrokerError('method_not_allowed');
    }
    sendToken(res, await pow.challenge(pageOrigin(req, originPolicy)));
  };
}
