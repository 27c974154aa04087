import type { OriginPolicy } from '../../caller/origins.js';
import { BrokerError } from '../../errors.js';
import type { Handler } from '../dispatch/handler.js';
import { sendToken } from '../tokenResponse.js';
import { pageOrigin } from './clientToken.js';

/**
 * `GET`/`POST /api/client-token/challenge`: with `CLIENT_TOKEN_ATTESTATION=pow` a fresh ALTCHA challenge
 * bound to the page's origin, as its widget's `challengeurl` expects it (`{parameters, signature}`), never
 * stored: each one buys one token; with a siteverify provider, `{provider, siteKey}` for the page's widget.
 */
export function attestationChallengeHandler({
  originPolicy,
  challenge,
}: {
  originPolicy: OriginPolicy;
  challenge: (origin: string) => Promise<object>;
}): Handler {
  return async (req, res) => {
    // POST too: a same-origin GET carries no `Origin`, and a page without a `Referer` would be unknown.
    if (req.method !== 'GET' && req.method !== 'POST') {
      res.setHeader('Allow', 'GET, POST, OPTIONS');
      throw new BrokerError('method_not_allowed');
    }
    sendToken(res, await challenge(pageOrigin(req, originPolicy)));
  };
}
