import { z } from 'zod';
import { emptyToUndefined, int, jwkSet } from './fields.js';

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
    signingKeys: e.SIGNING_KEYS as ClientTokensConfig['signingKeys'],
  };
}
