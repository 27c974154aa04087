import type { RequestHandler } from 'express';
import type { ApiKeyLabeler } from '../../auth/apiKeyLabel.js';
import type { ApiKeyVerifier } from '../../auth/apiKeys.js';
import { bindingFor, canonicalIp } from '../../caller/ip.js';
import { normalizeOrigin } from '../../caller/origins.js';
import type { Config } from '../../config/index.js';
import { BrokerError } from '../../errors.js';
import { formatAllowRules, parseAllowRules } from '../../proxy/allowRules.js';
import type { ClientTokens } from '../../signing/clientTokens.js';
import type { Upstreams } from '../../upstream/registry.js';
import { bearerToken, requireApiKey } from '../middleware/apiKeyAuth.js';
import { grantedUpstreams, requestedUpstreams } from '../middleware/upstreamAccess.js';
import { type ClaimResponse, claimRequest } from '../schemas.js';
import { sendToken } from '../tokenResponse.js';

export interface ClaimRouteDeps {
  config: Pick<Config, 'clientToken'>;
  upstreams: Upstreams;
  apiKeys: ApiKeyVerifier;
  /** Names the claiming key in the token's `sub` without revealing anything testable about it. */
  apiKeyLabel: ApiKeyLabeler;
  clientTokens: ClientTokens;
}

/**
 * `POST /api/auth/claim`: the Trefle-style route. A backend holding a broker API key asks for a client
 * token bound to an origin (and optionally an IP) of its choosing; the key is trusted to choose.
 */
export function claimHandler({
  config,
  upstreams,
  apiKeys,
  apiKeyLabel,
  clientTokens,
}: ClaimRouteDeps): RequestHandler {
  return async (req, res) => {
    const body: unknown = req.body;
    const fields = { ...req.query, ...(body && typeof body === 'object' ? body : {}) };
    const parsed = claimRequest.safeParse(fields);
    // The key is read on its own, so a bad `origin` or `ip` next to a good key is a 400 naming the field.
    const token = claimRequest.shape.token.safeParse((fields as { token?: unknown }).token);
    const presented = bearerToken(req) ?? (token.success ? token.data : undefined);
    // The key is checked before the input, so an unauthenticated caller learns nothing about validation.
    requireApiKey(apiKeys, presented);
    if (!parsed.success) {
      throw new BrokerError('invalid_request', { detail: describeIssues(parsed.error.issues) });
    }
    const { origin: rawOrigin, ip: rawIp } = parsed.data;
    if (!rawOrigin) throw new BrokerError('origin_required', { detail: 'origin is required' });
    const origin = normalizeOrigin(rawOrigin);
    if (!origin)
      throw new BrokerError('invalid_request', { detail: 'origin must look like https://app.example.com' });
    const ip = rawIp === undefined ? undefined : canonicalIp(rawIp);
    if (rawIp !== undefined && !ip)
      throw new BrokerError('invalid_request', {
        detail: "ip: must be the user's IPv4 or IPv6 address, e.g. 203.0.113.7",
      });
    const allow = narrowingRules(parsed.data.allow);
    const opened = grantedUpstreams(upstreams, origin, requestedUpstreams(parsed.data.upstreams, upstreams));
    const binding = ip ? bindingFor(config.clientToken.bindIp, ip, config.clientToken) : undefined;
    const minted = await clientTokens.mint({
      sub: apiKeyLabel(presented ?? ''),
      origin,
      ...binding,
      upstreams: opened,
      allow,
    });
    const expiresAt = new Date(minted.exp * 1000);
    const answer: ClaimResponse = {
      token: minted.token,
      expiration: trefleExpiration(expiresAt),
      expiresIn: minted.expiresIn,
      expiresAt: expiresAt.toISOString(),
    };
    sendToken(res, answer);
  };
}

/** The `allow` rules a backend narrows a token to, written as the proxy reads them; undefined when none. */
function narrowingRules(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const rules = parseAllowRules(value);
  if (typeof rules === 'string') throw new BrokerError('invalid_request', { detail: `allow: ${rules}` });
  return formatAllowRules(rules);
}

/** `MM-DD-YYYY HH:mm` in UTC, as Trefle answers. */
export function trefleExpiration(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}-${date.getUTCFullYear()} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;
}

function describeIssues(issues: readonly { path: PropertyKey[]; message: string }[]): string {
  return issues.map((issue) => `${issue.path.map(String).join('.') || 'body'}: ${issue.message}`).join('; ');
}
