import { Router } from 'express';
import type { ApiKeyVerifier } from '../../apiKeys.js';
import type { Clock } from '../../clock.js';
import type { TokenCache } from '../../upstream/types.js';
import { bearerToken, requireApiKey } from '../apiKeyAuth.js';
import type { UpstreamTokenResponse } from '../schemas.js';
import { sendToken } from '../tokenResponse.js';

export interface UpstreamTokenRouteDeps {
  apiKeys: ApiKeyVerifier;
  cache: TokenCache;
  clock: Clock;
}

/**
 * `GET /api/upstream-token`: the cached upstream token, for another container of the pod that must call
 * the API itself. The only answer that ever carries an upstream token.
 */
export function upstreamTokenRoute({ apiKeys, cache, clock }: UpstreamTokenRouteDeps): Router {
  const router = Router();
  router.get('/api/upstream-token', async (req, res) => {
    requireApiKey(apiKeys, bearerToken(req));
    const token = await cache.get();
    const body: UpstreamTokenResponse = {
      access_token: token.accessToken,
      token_type: token.tokenType,
      expires_in: Math.max(0, Math.floor((token.expiresAt - clock.now()) / 1000)),
    };
    if (token.scope) body.scope = token.scope;
    sendToken(res, body);
  });
  return router;
}
