import { z } from 'zod';
import { type ClientKey, parseClientKey } from '../upstream/clientAssertion.js';
import { parseTokenQuota, type TokenQuota } from '../upstream/quota.js';
import { emptyToUndefined, int, optionalString, optionalUrl } from './fields.js';

/** A value parsed by `parse`, which answers either the value or a problem to report. */
const parsedBy = <T extends object>(parse: (value: string) => T | string) =>
  z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value, ctx) => {
        const parsed = parse(value);
        if (typeof parsed === 'string') {
          ctx.addIssue({ code: 'custom', message: parsed });
          return z.NEVER;
        }
        return parsed;
      })
      .optional(),
  );

/** The authorization server the broker gets tokens from, and the API those tokens open. */
export const upstreamSchema = z.object({
  UPSTREAM_ISSUER: optionalUrl,
  UPSTREAM_TOKEN_URL: optionalUrl,
  UPSTREAM_CLIENT_ID: optionalString,
  UPSTREAM_CLIENT_SECRET: optionalString,
  UPSTREAM_PROFILE: z.preprocess(emptyToUndefined, z.enum(['rfc6749', 'json', 'bloq']).default('rfc6749')),
  UPSTREAM_AUTH_METHOD: z.preprocess(
    emptyToUndefined,
    z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt']).default('client_secret_basic'),
  ),
  UPSTREAM_CLIENT_KEY: parsedBy(parseClientKey),
  UPSTREAM_CLIENT_ASSERTION_AUDIENCE: z.preprocess(
    emptyToUndefined,
    z.enum(['token_endpoint', 'issuer']).default('token_endpoint'),
  ),
  UPSTREAM_TOKEN_QUOTA: parsedBy(parseTokenQuota),
  UPSTREAM_AUDIENCE: optionalString,
  UPSTREAM_SCOPE: optionalString,
  UPSTREAM_RESOURCE: optionalUrl,
  UPSTREAM_API_URL: optionalUrl,
  UPSTREAM_DEFAULT_TTL: int(1, 86_400, 300),
  UPSTREAM_TIMEOUT_MS: int(100, 120_000, 5_000),
  UPSTREAM_API_TIMEOUT_MS: int(1_000, 3_600_000, 300_000),
  PROXY_MAX_REPLAY_BYTES: int(0, 10_485_760, 65_536),
});

export const upstreamSecrets = ['UPSTREAM_CLIENT_SECRET', 'UPSTREAM_CLIENT_KEY'] as const;

type UpstreamEnv = z.infer<typeof upstreamSchema>;

export interface UpstreamConfig {
  issuer: string | undefined;
  tokenUrl: string | undefined;
  clientId: string;
  clientSecret: string;
  profile: UpstreamEnv['UPSTREAM_PROFILE'];
  authMethod: UpstreamEnv['UPSTREAM_AUTH_METHOD'];
  audience: string | undefined;
  scope: string | undefined;
  resource: string | undefined;
  apiUrl: string | undefined;
  defaultTtlSeconds: number;
  timeoutMs: number;
  /** Whole-exchange limit of a proxied API call, streaming included. */
  apiTimeoutMs: number;
  /** Request bodies up to this size are buffered so a 401 from the API can be retried with them. */
  maxReplayBytes: number;
  /** The imported private key of `private_key_jwt`; set when `authMethod` is `private_key_jwt`. */
  clientKey?: ClientKey | undefined;
  /** `aud` of the client assertions: the token endpoint (the default) or the issuer. */
  clientAssertionAudience?: UpstreamEnv['UPSTREAM_CLIENT_ASSERTION_AUDIENCE'];
  /** Budget of requests to the token endpoint (`UPSTREAM_TOKEN_QUOTA`); undefined: no governor. */
  tokenQuota?: TokenQuota | undefined;
}

/** How the broker authenticates to the token endpoint: a client secret, or a private key (RFC 7523). */
function clientAuthProblems(e: UpstreamEnv): string[] {
  const problems: string[] = [];
  if (e.UPSTREAM_AUTH_METHOD !== 'private_key_jwt') {
    if (!e.UPSTREAM_CLIENT_SECRET) {
      problems.push(
        'UPSTREAM_CLIENT_SECRET: required when an upstream is configured (or UPSTREAM_CLIENT_SECRET_FILE)',
      );
    }
    if (e.UPSTREAM_CLIENT_KEY) {
      problems.push(
        'UPSTREAM_CLIENT_KEY: only used with UPSTREAM_AUTH_METHOD=private_key_jwt; set it or drop the key',
      );
    }
    return problems;
  }
  if (!e.UPSTREAM_CLIENT_KEY) {
    problems.push(
      'UPSTREAM_CLIENT_KEY: required with UPSTREAM_AUTH_METHOD=private_key_jwt (a private JWK, or UPSTREAM_CLIENT_KEY_FILE)',
    );
  }
  if (e.UPSTREAM_PROFILE === 'bloq') {
    problems.push(
      'UPSTREAM_AUTH_METHOD: private_key_jwt is not possible with UPSTREAM_PROFILE=bloq (its body has no client assertion); use rfc6749 or json',
    );
  }
  if (e.UPSTREAM_CLIENT_ASSERTION_AUDIENCE === 'issuer' && !e.UPSTREAM_ISSUER) {
    problems.push('UPSTREAM_CLIENT_ASSERTION_AUDIENCE: "issuer" needs UPSTREAM_ISSUER');
  }
  return problems;
}

const upstreamVars = [
  'UPSTREAM_ISSUER',
  'UPSTREAM_TOKEN_URL',
  'UPSTREAM_CLIENT_ID',
  'UPSTREAM_CLIENT_SECRET',
  'UPSTREAM_CLIENT_KEY',
  'UPSTREAM_API_URL',
] as const;

/**
 * The configured upstream, or undefined when none is (outside production that means "start the dev
 * upstream"; in production it is a problem).
 */
export function upstreamConfig(
  e: UpstreamEnv,
  production: boolean,
  problems: string[],
): UpstreamConfig | undefined {
  const anyUpstream = upstreamVars.some((name) => e[name] !== undefined);
  if (!anyUpstream && !production) return undefined;
  if (!e.UPSTREAM_TOKEN_URL && !e.UPSTREAM_ISSUER) {
    problems.push(
      production && !anyUpstream
        ? 'UPSTREAM_TOKEN_URL: no upstream is configured; production never starts the dev upstream (set UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER)'
        : 'UPSTREAM_TOKEN_URL: set UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER',
    );
  }
  if (!e.UPSTREAM_CLIENT_ID) problems.push('UPSTREAM_CLIENT_ID: required when an upstream is configured');
  problems.push(...clientAuthProblems(e));
  return {
    issuer: e.UPSTREAM_ISSUER,
    tokenUrl: e.UPSTREAM_TOKEN_URL,
    clientId: e.UPSTREAM_CLIENT_ID ?? '',
    clientSecret: e.UPSTREAM_CLIENT_SECRET ?? '',
    profile: e.UPSTREAM_PROFILE,
    authMethod: e.UPSTREAM_AUTH_METHOD,
    audience: e.UPSTREAM_AUDIENCE,
    scope: e.UPSTREAM_SCOPE,
    resource: e.UPSTREAM_RESOURCE,
    apiUrl: e.UPSTREAM_API_URL,
    defaultTtlSeconds: e.UPSTREAM_DEFAULT_TTL,
    timeoutMs: e.UPSTREAM_TIMEOUT_MS,
    apiTimeoutMs: e.UPSTREAM_API_TIMEOUT_MS,
    maxReplayBytes: e.PROXY_MAX_REPLAY_BYTES,
    clientKey: e.UPSTREAM_CLIENT_KEY,
    clientAssertionAudience: e.UPSTREAM_CLIENT_ASSERTION_AUDIENCE,
    tokenQuota: e.UPSTREAM_TOKEN_QUOTA,
  };
}
