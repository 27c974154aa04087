import { z } from 'zod';
import { emptyToUndefined, int, jwkSet, optionalUrl } from './fields.js';

/** A path segment of a clean prefix: RFC 3986 `pchar`s, never `.` or `..` (spelled out or percent-encoded). */
const cleanSegment = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+$/;
const dotSegment = /^(?:\.|%2e){1,2}$/i;

/**
 * Why a `PUBLIC_URL` cannot be a base that a request's path is appended to, or undefined when it can. A
 * query or fragment would swallow the path (a proof naming the bare base would match every path), user
 * info has no place in `htu`, and a path with `.`, `..`, `//` or odd characters is not the prefix a
 * browser's URL starts with once normalised.
 */
export function publicUrlProblem(raw: string): string | undefined {
  if (/[?#]/.test(raw)) return 'must not have a query or fragment';
  if (raw.includes('\\')) return 'must not have a `\\`';
  const origin = /^https?:\/\/[^/]*/i.exec(raw)?.[0] ?? '';
  if (origin.includes('@')) return 'must not have user info';
  const path = raw.slice(origin.length).replace(/\/+$/, '');
  if (path === '') return undefined;
  const segments = path.split('/').slice(1);
  if (!segments.every((segment) => cleanSegment.test(segment) && !dotSegment.test(segment))) {
    return 'must have a clean path prefix (no `.`, `..`, `//` or characters a URL would encode)';
  }
  return undefined;
}

const publicUrl = optionalUrl.superRefine((value, context) => {
  const problem = value === undefined ? undefined : publicUrlProblem(value);
  if (problem)
    context.addIssue({ code: 'custom', message: `${problem}: the base URL browsers reach the broker at` });
});

/** What the broker mints for browsers: lifetime, binding and the keys that sign. */
export const clientTokensSchema = z.object({
  CLIENT_TOKEN_TTL: int(1, 86_400, 900).meta({
    description: 'client token lifetime, seconds',
    example: '300',
  }),
  CLIENT_TOKEN_BIND_IP: z
    .preprocess(emptyToUndefined, z.enum(['exact', 'prefix', 'off']).default('exact'))
    .meta({
      description: "bind client tokens to the caller's IP: `exact`, `prefix` (same `/24` or `/64`) or `off`",
      example: 'prefix',
    }),
  CLIENT_TOKEN_BINDING: z.preprocess(emptyToUndefined, z.enum(['none', 'dpop']).default('none')).meta({
    description:
      "`dpop` requires a DPoP proof (RFC 9449) at `/api/client-token` and binds tokens to the browser's key (see [DPoP](dpop.md))",
    example: 'dpop',
  }),
  PUBLIC_URL: publicUrl.meta({
    description:
      "the URL browsers reach the broker at (with any path prefix a proxy strips; no query, fragment or user info); DPoP `htu` is checked against it instead of the request's `Host`. In production, DPoP proofs are refused without it, and it is required with `CLIENT_TOKEN_BINDING=dpop`",
    example: 'https://app.example.com',
  }),
  CLIENT_TOKEN_IPV4_PREFIX: int(8, 32, 24).meta({
    description: 'IPv4 prefix length for `CLIENT_TOKEN_BIND_IP=prefix`',
    example: '24',
  }),
  CLIENT_TOKEN_IPV6_PREFIX: int(16, 128, 64).meta({
    description: 'IPv6 prefix length for `CLIENT_TOKEN_BIND_IP=prefix`',
    example: '64',
  }),
  CLIENT_TOKEN_ISSUER: z
    .preprocess(emptyToUndefined, z.string().default('urn:token-broker'))
    .meta({ description: '`iss` of client tokens', example: 'https://broker.example.com' }),
  CLIENT_TOKEN_AUDIENCE: z
    .preprocess(emptyToUndefined, z.string().default('urn:token-broker:proxy'))
    .meta({ description: '`aud` of client tokens', example: 'https://broker.example.com/api/proxy' }),
  CLIENT_TOKEN_CLOCK_TOLERANCE: int(0, 300, 5).meta({
    description: 'seconds of clock skew accepted when verifying client tokens',
    example: '5',
  }),
  DPOP_PROOF_MAX_AGE: int(5, 300, 30).meta({
    description:
      "seconds a DPoP proof's `iat` may be in the past or the future; remembered proofs expire with it",
    example: '30',
  }),
  DPOP_REPLAY_CACHE_SIZE: int(100, 10_000_000, 200_000).meta({
    description:
      'DPoP proofs each replica remembers; when full the one with the oldest `iat` is forgotten and proofs no newer are refused, while proofs of the last 5 s are always kept, so a new proof is never refused',
    example: '200000',
  }),
  DPOP_PROOFS_PER_KEY: int(10, 1_000_000, 5_000).meta({
    description:
      'live remembered proofs of one DPoP key; beyond it that key gets `429 rate_limited` (one key cannot fill the cache)',
    example: '5000',
  }),
  SIGNING_KEYS: jwkSet.meta({
    description:
      'private JWK Set that signs client tokens: the first key signs, all verify. EdDSA recommended, ES256, or HS256 for Trefle-compatible verifiers. Required in production',
    example: '"$(npx token-broker keys generate)"',
    default: 'an ephemeral key (development only)',
  }),
});

export const clientTokensSecrets = ['SIGNING_KEYS'] as const;

type ClientTokensEnv = z.infer<typeof clientTokensSchema>;

export interface ClientTokensConfig {
  clientToken: {
    ttlSeconds: number;
    bindIp: ClientTokensEnv['CLIENT_TOKEN_BIND_IP'];
    ipv4Prefix: number;
    ipv6Prefix: number;
    issuer: string;
    audience: string;
    clockToleranceSeconds: number;
  };
  /**
   * `dpop`: `/api/client-token` requires a DPoP proof and binds every token it mints to the proof's key
   * (RFC 9449); `none`: a proof is optional (a token requested with one is bound all the same).
   */
  clientTokenBinding: ClientTokensEnv['CLIENT_TOKEN_BINDING'];
  /**
   * The broker's public base URL as browsers address it (`PUBLIC_URL`), without a trailing slash: DPoP
   * `htu` is checked against it rather than the request's `Host`. Undefined: the request's own URL.
   */
  publicUrl: string | undefined;
  /** The DPoP replay defences (RFC 9449 §11.1): a short `iat` window and a bounded replay cache. */
  dpop: {
    /** A proof's `iat` may be this far in the past or the future, in seconds. */
    proofMaxAgeSeconds: number;
    /** Most proofs each replica remembers; the oldest is forgotten when full. */
    replayCacheSize: number;
    /** Most live proofs remembered per key; a key beyond it is answered 429. */
    proofsPerKey: number;
  };
  /** A private JWK Set; undefined means "make an ephemeral key" (refused in production). */
  signingKeys: { keys: Record<string, unknown>[] } | undefined;
}

export function clientTokensConfig(
  e: ClientTokensEnv,
  production: boolean,
  problems: string[],
): ClientTokensConfig {
  if (production && !e.SIGNING_KEYS) {
    problems.push('SIGNING_KEYS: required in production (a private JWK Set, or SIGNING_KEYS_FILE)');
  }
  // A `Host` header is the client's to write: in production the URL a proof must name is configured.
  if (production && e.CLIENT_TOKEN_BINDING === 'dpop' && !e.PUBLIC_URL) {
    problems.push(
      'PUBLIC_URL: required with CLIENT_TOKEN_BINDING=dpop in production (the URL browsers reach the broker at, e.g. https://app.example.com)',
    );
  }
  return {
    clientToken: {
      ttlSeconds: e.CLIENT_TOKEN_TTL,
      bindIp: e.CLIENT_TOKEN_BIND_IP,
      ipv4Prefix: e.CLIENT_TOKEN_IPV4_PREFIX,
      ipv6Prefix: e.CLIENT_TOKEN_IPV6_PREFIX,
      issuer: e.CLIENT_TOKEN_ISSUER,
      audience: e.CLIENT_TOKEN_AUDIENCE,
      clockToleranceSeconds: e.CLIENT_TOKEN_CLOCK_TOLERANCE,
    },
    clientTokenBinding: e.CLIENT_TOKEN_BINDING,
    publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ''),
    dpop: {
      proofMaxAgeSeconds: e.DPOP_PROOF_MAX_AGE,
      replayCacheSize: e.DPOP_REPLAY_CACHE_SIZE,
      proofsPerKey: e.DPOP_PROOFS_PER_KEY,
    },
    signingKeys: e.SIGNING_KEYS as ClientTokensConfig['signingKeys'],
  };
}
