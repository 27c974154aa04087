import { z } from 'zod';
import {
  emptyToUndefined,
  int,
  optionalString,
  optionalUrl,
  type RateLimitRule,
  rateLimit,
} from './fields.js';

export const attestationProviders = [
  'none',
  'pow',
  'turnstile',
  'hcaptcha',
  'recaptcha',
  'app-check',
] as const;
export type AttestationProviderName = (typeof attestationProviders)[number];
/** The providers whose proof is checked by the provider's own siteverify endpoint. */
export type SiteverifyProviderName = Extract<AttestationProviderName, 'turnstile' | 'hcaptcha' | 'recaptcha'>;

/** Proof before minting at `/api/client-token` (see [attestation](attestation.md)); part of the client-token settings. */
export const attestationSchema = z.object({
  CLIENT_TOKEN_ATTESTATION: z
    .preprocess(emptyToUndefined, z.enum(attestationProviders).default('none'))
    .meta({
      description:
        '`/api/client-token` asks for a proof in the `Attestation` header before minting: `none`, `pow` (self-hosted proof of work), `turnstile`, `hcaptcha`, `recaptcha` or `app-check` (Firebase App Check; see [attestation](attestation.md))',
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
  CLIENT_TOKEN_ATTESTATION_SECRET: optionalString.meta({
    description:
      "`turnstile`, `hcaptcha`, `recaptcha`: the secret key sent to the provider's siteverify endpoint",
    example: '0x4AAAAAAA...',
  }),
  CLIENT_TOKEN_ATTESTATION_SITE_KEY: optionalString.meta({
    description:
      'the site key the page shows the widget with; `/api/client-token/challenge` hands it to the page',
    example: '0x4AAAAAAABkMYinukE8nzY',
  }),
  CLIENT_TOKEN_ATTESTATION_VERIFY_URL: optionalUrl.meta({
    description: "the siteverify endpoint; the provider's own by default",
    example: 'https://challenges.cloudflare.com/turnstile/v0/siteverify',
    default: "the provider's own",
  }),
  CLIENT_TOKEN_ATTESTATION_ACTION: optionalString.meta({
    description: 'siteverify providers: the `action` an answer must carry; any when unset',
    example: 'client_token',
  }),
  CLIENT_TOKEN_ATTESTATION_MAX_AGE: int(10, 3_600, 300).meta({
    description:
      "siteverify providers: oldest accepted `challenge_ts` (when the page's widget was solved), seconds",
    example: '300',
  }),
  CLIENT_TOKEN_ATTESTATION_TIMEOUT_MS: int(100, 30_000, 3_000).meta({
    description: 'longest wait for the siteverify endpoint or the App Check JWKS, ms',
    example: '3000',
  }),
  CLIENT_TOKEN_ATTESTATION_FAIL_OPEN: z
    .preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false'))
    .meta({
      description:
        'siteverify providers: mint anyway when the provider times out, answers 5xx or an unreadable answer (logged and counted); refused by default',
      example: 'false',
    }),
  CLIENT_TOKEN_ATTESTATION_JWKS_URL: optionalUrl.meta({
    description: '`app-check`: the JWKS that App Check tokens are verified against',
    example: 'https://firebaseappcheck.googleapis.com/v1/jwks',
    default: 'https://firebaseappcheck.googleapis.com/v1/jwks',
  }),
  CLIENT_TOKEN_ATTESTATION_AUDIENCE: optionalString.meta({
    description:
      "`app-check`: the Firebase project number; a token's `aud` must hold `projects/<it>` and its `iss` be App Check's issuer for it",
    example: '123456789012',
  }),
});

export const attestationSecrets = ['CLIENT_TOKEN_ATTESTATION_SECRET'] as const;

type AttestationEnv = z.infer<typeof attestationSchema>;

const siteverifyUrls: Record<SiteverifyProviderName, string> = {
  turnstile: 'https://challenges.cloudflare.com/turnstile/v0/siteverify',
  hcaptcha: 'https://api.hcaptcha.com/siteverify',
  recaptcha: 'https://www.google.com/recaptcha/api/siteverify',
};

export interface AttestationConfig {
  attestation: {
    provider: AttestationProviderName;
    /** Tokens per IP and window without a proof; undefined: every token needs one. */
    after: RateLimitRule | undefined;
    pow: { difficulty: number; cost: number; ttlSeconds: number };
    siteverify: {
      secret: string | undefined;
      verifyUrl: string;
      action: string | undefined;
      maxAgeSeconds: number;
      failOpen: boolean;
      timeoutMs: number;
    };
    /** Handed to the page by `/api/client-token/challenge`, for the provider's widget. */
    siteKey: string | undefined;
    appCheck: { jwksUrl: string; projectNumber: string | undefined; timeoutMs: number };
  };
}

export function attestationConfig(e: AttestationEnv, problems: string[]): AttestationConfig {
  const provider = e.CLIENT_TOKEN_ATTESTATION;
  if (provider === 'app-check' && !e.CLIENT_TOKEN_ATTESTATION_AUDIENCE) {
    problems.push(
      'CLIENT_TOKEN_ATTESTATION_AUDIENCE: required with CLIENT_TOKEN_ATTESTATION=app-check (the Firebase project number)',
    );
  }
  const siteverify = provider === 'turnstile' || provider === 'hcaptcha' || provider === 'recaptcha';
  if (siteverify && !e.CLIENT_TOKEN_ATTESTATION_SECRET) {
    problems.push(
      `CLIENT_TOKEN_ATTESTATION_SECRET: required with CLIENT_TOKEN_ATTESTATION=${provider} (the provider's secret key, or CLIENT_TOKEN_ATTESTATION_SECRET_FILE)`,
    );
  }
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
      siteverify: {
        secret: e.CLIENT_TOKEN_ATTESTATION_SECRET,
        verifyUrl: e.CLIENT_TOKEN_ATTESTATION_VERIFY_URL ?? (siteverify ? siteverifyUrls[provider] : ''),
        action: e.CLIENT_TOKEN_ATTESTATION_ACTION,
        maxAgeSeconds: e.CLIENT_TOKEN_ATTESTATION_MAX_AGE,
        failOpen: e.CLIENT_TOKEN_ATTESTATION_FAIL_OPEN === 'true',
        timeoutMs: e.CLIENT_TOKEN_ATTESTATION_TIMEOUT_MS,
      },
      siteKey: e.CLIENT_TOKEN_ATTESTATION_SITE_KEY,
      appCheck: {
        jwksUrl: e.CLIENT_TOKEN_ATTESTATION_JWKS_URL ?? 'https://firebaseappcheck.googleapis.com/v1/jwks',
        projectNumber: e.CLIENT_TOKEN_ATTESTATION_AUDIENCE,
        timeoutMs: e.CLIENT_TOKEN_ATTESTATION_TIMEOUT_MS,
      },
    },
  };
}
