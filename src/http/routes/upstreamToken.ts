import type { RequestHandler } from 'express';
import type { ApiKeyVerifier } from '../../auth/apiKeys.js';
import type { Clock } from '../../clock.js';
import { BrokerError } from '../../errors.js';
import type { Upstream, Upstreams } from '../../upstream/registry.js';
import { bearerToken, requireApiKey } from '../middleware/apiKeyAuth.js';
import type { UpstreamTokenResponse } from '../schemas.js';
import { sendToken } from '../tokenResponse.js';

export interface UpstreamTokenRouteDeps {
  apiKeys: ApiKeyVerifier;
  upstreams: Upstreams;
  clock: Clock;
}

/**
 * `GET /api/upstream-token[?upstream=<name>]`: the cached upstream token, for another container of the
 * pod that must call the API itself. The only answer that ever carries an upstream token. The name may
 * be left out when only one upstream is configured.
 */
export function upstreamTokenHandler({ apiKeys, upstreams, clock }: UpstreamTokenRouteDeps): RequestHandler {
  return async (req, res) => {
    requireApiKey(apiKeys, bearerToken(req));
    const upstream = chosen(upstreams, req.query.upstream);
    if (!upstream.cache) {
      // A long-lived key would outlive any leak of it; only the proxy ever sends it.
      throw new BrokerError('not_found', {
        detail: `upstream "${upstream.name}" uses a static API key, which the broker never hands out; call its API through /api/proxy`,
      });
    }
    const token = await upstream.cache.get();
    const body: UpstreamTokenResponse = {
      access_token: token.accessToken,
      token_type: token.tokenType,
      expires_in: Math.max(0, Math.floor((token.expiresAt - clock.now()) / 1000)),
    };
    if (token.scope) body.scope = token.scope;
    sendToken(res, body);
  };
}

function chosen(upstreams: Upstreams, name: unknown): Upstream {
  const known = upstreams.list.map((upstream) => upstream.name).join(', ');
  if (name === undefined && upstreams.list.length === 1 && upstreams.list[0]) return upstreams.list[0];
  if (name === undefined) {
    throw new BrokerError('invalid_request', { detail: `upstream is required: one of ${known}` });
  }
  const upstream = typeof name === 'string' ? upstreams.get(name) : undefined;
  if (!upstream) {
    throw new BrokerError('invalid_request', { detail: `upstream must be one of ${known}` });
  }
  return upstream;
}
