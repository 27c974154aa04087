import type { RequestHandler } from 'express';
import { z } from 'zod';
import type { ApiKeyVerifier } from '../../auth/apiKeys.js';
import { BrokerError } from '../../errors.js';
import type { ClientTokens } from '../../signing/clientTokens.js';
import type { RevocationList } from '../../signing/revocations.js';
import { bearerToken, requireApiKey } from '../middleware/apiKeyAuth.js';
import { sendToken } from '../tokenResponse.js';

export interface IntrospectionRouteDeps {
  apiKeys: ApiKeyVerifier;
  clientTokens: ClientTokens;
  revocations: RevocationList;
}

/** RFC 7662 §2.1 / RFC 7009 §2.1: the token as a form (or JSON) parameter, with an optional hint. */
export const tokenParameter = z.object({
  token: z.string().min(1).max(16_384),
  token_type_hint: z.string().max(64).optional(),
});

/**
 * `POST /api/client-token/introspect` (RFC 7662) and `/revoke` (RFC 7009) for client tokens, behind
 * the broker API key. Origin and IP are not checked here: a backend asks about a token, it does not use it.
 */
export function introspectionRoutes({ apiKeys, clientTokens, revocations }: IntrospectionRouteDeps): {
  introspect: RequestHandler;
  revoke: RequestHandler;
} {
  const tokenFrom = (body: unknown) => {
    const parsed = tokenParameter.safeParse(body ?? {});
    if (!parsed.success) throw new BrokerError('invalid_request', { detail: 'token is required' });
    return parsed.data.token;
  };

  const introspect: RequestHandler = async (req, res) => {
    requireApiKey(apiKeys, bearerToken(req));
    const token = tokenFrom(req.body);
    try {
      const claims = await clientTokens.verify(token);
      const { ipPrefix, ...rest } = claims;
      sendToken(res, {
        active: true,
        token_type: claims.cnf ? 'DPoP' : 'Bearer',
        ...rest,
        ...(ipPrefix ? { ip_prefix: ipPrefix } : {}),
      });
    } catch (error) {
      // RFC 7662 §2.2: anything not currently active is just `active: false`, with no reason given.
      if (!(error instanceof BrokerError)) throw error;
      sendToken(res, { active: false });
    }
  };

  const revoke: RequestHandler = async (req, res) => {
    requireApiKey(apiKeys, bearerToken(req));
    const token = tokenFrom(req.body);
    try {
      const claims = await clientTokens.verify(token);
      await revocations.revoke(claims.jti, claims.exp);
    } catch (error) {
      // RFC 7009 §2.2: an invalid, expired or already revoked token is answered 200 all the same.
      if (!(error instanceof BrokerError)) throw error;
    }
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).end();
  };
  return { introspect, revoke };
}
