import { z } from 'zod';
import { emptyToUndefined, int, jwkSet } from './fields.js';

/** What the broker mints for browsers: lifetime, binding and the keys that sign. */
export const clientTokensSchema = z.object({
  CLIENT_TOKEN_TTL: int(1, 86_400, 900),
  CLIENT_TOKEN_BIND_IP: z.preprocess(emptyToUndefined, z.enum(['exact', 'prefix', 'off']).default('exact')),
  CLIENT_TOKEN_BINDING: z.preprocess(emptyToUndefined, z.enum(['none', 'dpop']).default('none')),
  CLIENT_TOKEN_IPV4_PREFIX: int(8, 32, 24),
  CLIENT_TOKEN_IPV6_PREFIX: int(16, 128, 64),
  CLIENT_TOKEN_ISSUER: z.preprocess(emptyToUndefined, z.string().default('urn:token-broker')),
  CLIENT_TOKEN_AUDIENCE: z.preprocess(emptyToUndefined, z.string().default('urn:token-broker:proxy')),
  CLIENT_TOKEN_CLOCK_TOLERANCE: int(0, 300, 5),
  SIGNING_KEYS: jwkSet,
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
