import querystring from 'node:querystring';
import parseurl from 'parseurl';
import { bindingFor } from '../../caller/ip.js';
import { type OriginPolicy, requestOrigin } from '../../caller/origins.js';
import type { CallerReader } from '../../caller/requestCaller.js';
import type { Config } from '../../config/index.js';
import type { DpopProofVerifier } from '../../dpop/proof.js';
import { BrokerError } from '../../errors.js';
import type { ClientTokens } from '../../signing/clientTokens.js';
import type { Upstreams } from '../../upstream/registry.js';
import { type Handler, headerValue } from '../dispatch/handler.js';
import { grantedUpstreams, requestedUpstreams } from '../middleware/upstreamAccess.js';
import { requestUrl } from '../requestUrl.js';
import type { ClientTokenResponse } from '../schemas.js';
import { sendToken } from '../tokenResponse.js';

export interface ClientTokenRouteDeps {
  config: Pick<Config, 'clientToken' | 'clientTokenBinding' | 'publicUrl'>;
  upstreams: Upstreams;
  originPolicy: OriginPolicy;
  clientTokens: ClientTokens;
  dpop: DpopProofVerifier;
  caller: CallerReader;
}

/**
 * `GET`/`POST /api/client-token`: the Miso-style route a page calls from its own origin. The origin
 * comes from the browser (`Origin`, else `Referer`); the token is bound to it and to the caller's IP.
 * app.ts builds the route's chain (CORS, rate limit, this handler) in one place.
 */
export function clientTokenHandler({
  config,
  upstreams,
  originPolicy,
  clientTokens,
  dpop,
  caller,
}: ClientTokenRouteDeps): Handler {
  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'POST') {
      res.setHeader('Allow', 'GET, POST, OPTIONS');
      throw new BrokerError('method_not_allowed');
    }
    const origin = requestOrigin(req.headers);
    if (!origin)
      throw new BrokerError('origin_required', { detail: 'send Origin (or Referer) from a browser page' });
    if (!originPolicy.isAllowed(origin)) {
      throw new BrokerError('origin_not_allowed', { detail: `${origin} is not in ALLOWED_ORIGINS` });
    }
    // `?upstreams=entry` narrows the token to some of the upstreams the origin may reach. Parsed as
    // Express's `simple` query parser does, for the direct lane has no `req.query`.
    const query = querystring.parse((parseurl(req)?.query as string | null | undefined) ?? '');
    const opened = grantedUpstreams(upstreams, origin, requestedUpstreams(query.upstreams, upstreams));
    const binding = bindingFor(config.clientToken.bindIp, caller.ip(req), config.clientToken);
    // A proof binds the token to its key (RFC 9449 §5); with CLIENT_TOKEN_BINDING=dpop one is required.
    const proof = headerValue(req, 'dpop');
    const jkt =
      proof !== undefined || config.clientTokenBinding === 'dpop'
        ? (
            await dpop.verify({
              proof,
              method: req.method ?? '',
              url: requestUrl(req, caller, config.publicUrl),
              endpoint: 'token',
            })
          ).jkt
        : undefined;
    const minted = await clientTokens.mint({ sub: origin, origin, ...binding, jkt, upstreams: opened });
    const body: ClientTokenResponse = {
      token: minted.token,
      tokenType: jkt === undefined ? 'Bearer' : 'DPoP',
      expiresIn: minted.expiresIn,
      expiresAt: new Date(minted.exp * 1000).toISOString(),
    };
    sendToken(res, body);
  };
}
