import { z } from 'zod';
import { emptyToUndefined, int, type RateLimitRule, rateLimit } from './fields.js';

export const attestationProviders = ['none', 'pow'] as const;
export type AttestationProviderName = (typeof attestationProviders)[number];

/** Proof before minting at `/api/client-token` (see [attestation](attestation.md)); part of the client-token settings. */
export const attestationSchema = z.object({
  CLIENT_TOKEN_ATTESTATION: z
    .preprocess(emptyToUndefined, z.enum(attestationProviders).default('none'))
    .meta({
      description:
        '`/api/client-token` asks for a proof in the `Attestation` header before minting: `none` or `pow` (self-hosted proof of work; see [attestation](attestation.md))',
      example: 'pow',
    }),
  CLIENT_TOKEN_ATTESTATION_AFTER: rateLimit('off').meta({
    description:
      'tokens an IP may get without a proof, as `<n>/second`, `<n>/minute` or `<n>/hour`; beyond it `401 attestation_required`. Unset: every token needs a proof',
    example: '5/hour',
    default: 'every token needs a proof',
  }),
  CLIENT_TOKEN_ATTESTATION_POW_DIFFICULTY: int(1, 6, 3).meta({
    description:
      '`pow`: leading zero hex digits the derived key must start with; each digit multiplies the expected work by 16',
    example: '3',
  }),
  CLIENT_TOKEN_ATTESTATION_POW_COST: int(1, 200, 200).meta({
    description:
      '`pow`: PBKDF2-SHA-256 iterations per attempt; the broker pays one derivation of this cost per verified solution',
    example: '200',
  }),
  CLIENT_TOKEN_ATTESTATION_POW_TTL: int(10, 3_600, 120).meta({
    description: '`pow`: seconds a challenge from `/api/client-token/challenge` stays solvable',
    example: '120',
  }),
});

type AttestationEnv = z.infer<typeof attestationSchema>;

export interface AttestationConfig {
  attestation: {
    provider: AttestationProviderName;
    /** Tokens per IP and window without a proof; undefined: every token needs one. */
    after: RateLimitRule | undefined;
    pow: { difficulty: number; cost: number; ttlSeconds: number };
  };
}

export function attestationConfig(e: AttestationEnv, problems: string[]): AttestationConfig {
  const provider = e.CLIENT_TOKEN_ATTESTATION;
  if (provider === 'none' && e.CLIENT_TOKEN_ATTESTATION_AFTER) {
    problems.push(
      'CLIENT_TOKEN_ATTESTATION_AFTER: only used with a CLIENT_TOKEN_ATTESTATION other than none',
    );
  }
  return {
    attestation: {
      provider,
      after: e.CLIENT_TOKEN_ATTESTATION_AFTER,
      pow: {
        difficulty: e.CLIENT_TOKEN_ATTESTATION_POW_DIFFICULTY,
        cost: e.CLIENT_TOKEN_ATTESTATION_POW_COST,
        ttlSeconds: e.CLIENT_TOKEN_ATTESTATION_POW_TTL,
      },
    },
  };
}
