import type { IncomingMessage } from 'node:http';
import querystring from 'node:querystring';
import parseurl from 'parseurl';
import type { AttestationGate } from '../../attestation/gate.js';
import { bindingFor } from '../../caller/ip.js';
import { type OriginPolicy, requestOrigin } from '../../caller/origins.js';
import type { CallerReader } from '../../caller/requestCaller.js';
import type { Config } from '../../config/index.js';
import type { DpopProofVerifier } from '../../dpop/proof.js';
import { BrokerError } from '../../errors.js';
import type { ClientTokens } from '../../signing/clientTokens.js';
import type { Logger } from '../../telemetry/logger.js';
import { inSpan, spanAttributes, spanNames, type Tracer } from '../../telemetry/spans.js';
import type { Upstreams } from '../../upstream/registry.js';
import { type Handler, headerValue } from '../dispatch/handler.js';
import { grantedUpstreams, requestedUpstreams } from '../middleware/upstreamAccess.js';
import { requestUrl } from '../requestUrl.js';
import type { ClientTokenResponse } from '../schemas.js';
import { sendToken } from '../tokenResponse.js';

export interface ClientTokenRouteDeps {
  config: Pick<Config, 'clientToken' | 'clientTokenBinding' | 'publicUrl' | 'production'>;
  upstreams: Upstreams;
  originPolicy: OriginPolicy;
  clientTokens: ClientTokens;
  dpop: DpopProofVerifier;
  caller: CallerReader;
  logger: Logger;
  /** With `CLIENT_TOKEN_ATTESTATION` other than `none`: the proof a token needs first. */
  attestation?: AttestationGate | undefined;
  /** With tracing on: a span around the mint, naming the origin, upstreams and binding (never the token). */
  tracer?: Tracer | undefined;
}

/** The origin of the page calling (`Origin`, else `Referer`), which must be allowed. */
export function pageOrigin(req: IncomingMessage, originPolicy: OriginPolicy): string {
  const origin = requestOrigin(req.headers);
  if (!origin)
    throw new BrokerError('origin_required', { detail: 'send Origin (or Referer) from a browser page' });
  if (!originPolicy.isAllowed(origin)) {
    throw new BrokerError('origin_not_allowed', { detail: `${origin} is not in ALLOWED_ORIGINS` });
  }
  return origin;
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
  logger,
  attestation,
  tracer,
}: ClientTokenRouteDeps): Handler {
  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'POST') {
      res.setHeader('Allow', 'GET, POST, OPTIONS');
      throw new BrokerError('method_not_allowed');
    }
    const origin = pageOrigin(req, originPolicy);
    // `?upstreams=entry` narrows the token to some of the upstreams the origin may reach. Parsed as
    // Express's `simple` query parser does, for the direct lane has no `req.query`.
    const query = querystring.parse((parseurl(req)?.query as string | null | undefined) ?? '');
    const opened = grantedUpstreams(upstreams, origin, requestedUpstreams(query.upstreams, upstreams));
    const ip = caller.ip(req);
    const binding = bindingFor(config.clientToken.bindIp, ip, config.clientToken);
    // A proof binds the token to its key (RFC 9449 §5); with CLIENT_TOKEN_BINDING=dpop one is required.
    const proof = headerValue(req, 'dpop');
    // Without PUBLIC_URL, `htu` would be checked against the client-written `Host`: in production no
    // proof binds a token then (PUBLIC_URL is required outright with CLIENT_TOKEN_BINDING=dpop).
    if (proof !== undefined && config.production && config.publicUrl === undefined) {
      throw new BrokerError('invalid_dpop_proof', {
        status: 400,
        detail:
          'this broker binds no token to a DPoP proof until its operator sets PUBLIC_URL; call without a DPoP header',
      });
    }
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
    // Last before minting: a proof is spent only when nothing else would refuse the request.
    if (attestation !== undefined) {
      await attestation.check({
        req,
        proof: headerValue(req, 'attestation'),
        origin,
        ip,
        log: () => res.locals.log ?? logger,
      });
    }
    const claims = { sub: origin, origin, ...binding, jkt, upstreams: opened };
    const minted = tracer
      ? await inSpan(
          tracer,
          spanNames.mint,
          {
            [spanAttributes.origin]: origin,
            // A token without the claim opens `default` only.
            [spanAttributes.upstreams]: opened ?? ['default'],
            [spanAttributes.binding]: bindingName(binding, jkt),
          },
          () => clientTokens.mint(claims),
        )
      : await clientTokens.mint(claims);
    const body: ClientTokenResponse = {
      token: minted.token,
      tokenType: jkt === undefined ? 'Bearer' : 'DPoP',
      expiresIn: minted.expiresIn,
      expiresAt: new Date(minted.exp * 1000).toISOString(),
    };
    sendToken(res, body);
  };
}

/**
 * What binds the token besides its origin: its caller's address (`ip`, or `ip_prefix` for a network)
 * and a DPoP key (`dpop`), joined by `+`; `none` when nothing does.
 */
function bindingName(binding: ReturnType<typeof bindingFor>, jkt: string | undefined): string {
  const address = binding === undefined ? undefined : binding.ipPrefix === undefined ? 'ip' : 'ip_prefix';
  if (jkt === undefined) return address ?? 'none';
  return address === undefined ? 'dpop' : `${address}+dpop`;
}
