import { z } from 'zod';
import { UpstreamError } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';

/** A bounded GET that resolves with any HTTP answer and throws `UpstreamError` (`network`, `timeout`) otherwise. */
export type MetadataGet = (url: string) => Promise<{ status: number; body: string }>;

/**
 * Where the metadata of `issuer` lives, in the order we try them: RFC 8414 inserts the well-known
 * segment between the host and the issuer's path; OpenID Connect Discovery appends it to the issuer.
 * @see https://www.rfc-editor.org/rfc/rfc8414#section-3.1
 * @see https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfigurationRequest
 */
export function metadataUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return [
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    `${url.origin}${path}/.well-known/openid-configuration`,
  ];
}

const loopbackHosts = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** Tokens and secrets travel to this URL: https only, plain http only on the loopback interface. */
export function isAcceptableTokenEndpoint(value: string): boolean {
  const url = URL.parse(value);
  if (!url || url.username || url.password || url.hash) return false;
  return url.protocol === 'https:' || (url.protocol === 'http:' && loopbackHosts.has(url.hostname));
}

const metadataSchema = z.object({
  issuer: z.string(),
  token_endpoint: z.string(),
  mtls_endpoint_aliases: z.object({ token_endpoint: z.string().optional() }).optional().catch(undefined),
});

/**
 * Finds the token endpoint from the authorization server's metadata. The answer is cached once found;
 * concurrent callers share one lookup, and a failed lookup is forgotten so the next call tries again.
 * A client that authenticates by certificate (`mtls`) takes the endpoint's mutual-TLS alias when the
 * server names one (RFC 8705 §5).
 */
export function createDiscovery(deps: { issuer: string; get: MetadataGet; logger: Logger; mtls?: boolean }): {
  tokenEndpoint(): Promise<string>;
} {
  const { issuer, get, logger } = deps;
  let found: string | undefined;
  let pending: Promise<string> | undefined;

  async function lookUp(): Promise<string> {
    let lastError = new UpstreamError('invalid_response', { description: 'no metadata document found' });
    for (const url of metadataUrls(issuer)) {
      const { status, body } = await get(url);
      if (status < 200 || status > 299) {
        lastError = new UpstreamError(`http_${status}`, {
          description: 'metadata request failed',
          httpStatus: status,
        });
        continue;
      }
      let metadata: z.infer<typeof metadataSchema>;
      try {
        metadata = metadataSchema.parse(JSON.parse(body));
      } catch {
        lastError = new UpstreamError('invalid_response', {
          description: 'metadata is not a JSON object with issuer and token_endpoint',
        });
        continue;
      }
      // RFC 8414 §3.3: metadata naming another issuer must not be used (it could be an impersonation).
      if (metadata.issuer !== issuer) {
        throw new UpstreamError('invalid_response', {
          description: `metadata issuer ${JSON.stringify(metadata.issuer.slice(0, 200))} is not the configured issuer`,
        });
      }
      const tokenEndpoint =
        (deps.mtls && metadata.mtls_endpoint_aliases?.token_endpoint) || metadata.token_endpoint;
      if (!isAcceptableTokenEndpoint(tokenEndpoint)) {
        throw new UpstreamError('invalid_response', { description: 'token_endpoint must be an https URL' });
      }
      logger.debug({ issuer, metadata: url, tokenEndpoint }, 'upstream token endpoint discovered');
      return tokenEndpoint;
    }
    throw lastError;
  }

  return {
    tokenEndpoint() {
      if (found) return Promise.resolve(found);
      pending ??= lookUp().then(
        (endpoint) => {
          found = endpoint;
          pending = undefined;
          return endpoint;
        },
        (error: unknown) => {
          pending = undefined;
          throw error;
        },
      );
      return pending;
    },
  };
}
