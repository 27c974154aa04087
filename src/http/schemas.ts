import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The shapes of what the routes accept and answer. Routes parse with these, and the OpenAPI document
 * is generated from them, so the two cannot drift.
 */

const boundedString = (max: number) => z.string().min(1).max(max);

/** `POST /api/auth/claim`, from query, JSON or form (Trefle-compatible field names). */
export const claimRequest = z.object({
  /** The upstreams the token opens, comma-separated (or a JSON array); all the origin may reach by default. */
  upstreams: z.union([boundedString(2048), z.array(boundedString(32)).max(64)]).optional(),
  /** `METHOD /path` rules narrowing what the token may call at the proxy, as `UPSTREAM_ALLOW` (never widening it). */
  allow: boundedString(2048).optional(),
  token: boundedString(1024).optional(),
  origin: boundedString(2048).optional(),
  ip: z
    .string()
    .max(64)
    .refine((value) => isIP(value.split('%')[0] ?? '') !== 0, {
      error: "must be the user's IPv4 or IPv6 address, e.g. 203.0.113.7",
    })
    .optional(),
});

export const clientTokenResponse = z.object({
  token: z.string(),
  /** `DPoP` when the token is bound to the key of the request's DPoP proof (RFC 9449 §5). */
  tokenType: z.enum(['Bearer', 'DPoP']),
  expiresIn: z.number().int().positive(),
  expiresAt: z.iso.datetime(),
});

export const claimResponse = z.object({
  token: z.string(),
  /** Trefle's format, in UTC. */
  expiration: z.string().regex(/^\d{2}-\d{2}-\d{4} \d{2}:\d{2}$/),
  expiresIn: z.number().int().positive(),
  expiresAt: z.iso.datetime(),
});

/** RFC 6749 §5.1 field names, for another container of the pod. */
export const upstreamTokenResponse = z.object({
  access_token: z.string(),
  token_type: z.string(),
  expires_in: z.number().int().nonnegative(),
  scope: z.string().optional(),
});

export const problemResponse = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  code: z.string(),
  detail: z.string().optional(),
  instance: z.string().optional(),
});

/** `GET /healthz`. */
export const healthResponse = z.object({ status: z.literal('ok') });

/** One upstream in `/readyz`: its token is held (or obtainable), or the refusal's code. */
/** What `/readyz?verbose` adds to each upstream, so that an outage explains itself. */
const readinessExplanation = {
  breaker: z.enum(['closed', 'open', 'half_open']).optional(),
  /** Seconds until the broker may ask the token endpoint again (backoff, `Retry-After`, open breaker). */
  nextAttemptIn: z.number().int().nonnegative().optional(),
  /** The last failed token request, cleared by a success: the upstream's error code and when. */
  lastError: z.object({ error: z.string(), at: z.iso.datetime() }).optional(),
  /** The latest proxied call that reached for the API: its status, or the code the client got instead. */
  api: z
    .object({
      answered: z.boolean(),
      status: z.number().int().optional(),
      code: z.string().optional(),
      at: z.iso.datetime(),
    })
    .optional(),
};

export const upstreamReadiness = z.union([
  z.object({ token: z.literal('held'), expiresIn: z.number().int().nonnegative(), ...readinessExplanation }),
  /** The upstream uses a static API key (`UPSTREAM_API_KEY`): nothing to obtain. */
  z.object({ token: z.literal('api_key'), ...readinessExplanation }),
  z.object({
    token: z.literal('unavailable'),
    code: z.string(),
    /** Why the start-up probe could not reach the token endpoint, when it could not. */
    unreachableAtStart: z.string().optional(),
    ...readinessExplanation,
  }),
]);

/**
 * `GET /readyz`: 200 when a token is held or obtainable for every upstream, 503 otherwise; `upstreams`
 * by name, and `upstream` as well when only one is configured. `/readyz?verbose` reports each upstream
 * once, under `upstreams`, with the breaker, the next attempt, the last error and the API's last call.
 */
export const readinessResponse = z.object({
  status: z.enum(['ready', 'not_ready']),
  redis: z.enum(['ok', 'degraded']).optional(),
  /** The configuration generation serving, and what the last reload of the `*_FILE` settings did. */
  config: z
    .object({
      generation: z.number().int().positive(),
      lastReload: z
        .object({
          outcome: z.enum(['applied', 'unchanged', 'refused']),
          trigger: z.string(),
          at: z.string(),
          settings: z.array(z.string()).optional(),
        })
        .optional(),
    })
    .optional(),
  upstream: upstreamReadiness.optional(),
  upstreams: z.record(z.string(), upstreamReadiness),
});

/** `GET /.well-known/jwks.json` (RFC 7517 §5): public keys only, so no private members. */
export const jwksResponse = z.object({
  keys: z.array(
    z.looseObject({
      kty: z.string(),
      kid: z.string(),
      alg: z.string().optional(),
      use: z.string().optional(),
      crv: z.string().optional(),
      x: z.string().optional(),
      y: z.string().optional(),
    }),
  ),
});

/**
 * `POST /api/client-token/introspect` (RFC 7662 §2.2): `{active:false}` and nothing else for any token
 * that is not currently valid; the claims of a valid one.
 */
export const introspectionResponse = z.union([
  z.strictObject({ active: z.literal(false) }),
  z.object({
    active: z.literal(true),
    /** `DPoP` for a token bound to a DPoP key (RFC 9449 §6.2), whose thumbprint is in `cnf.jkt`. */
    token_type: z.enum(['Bearer', 'DPoP']),
    iss: z.string(),
    aud: z.string(),
    sub: z.string(),
    origin: z.string(),
    ip: z.string().optional(),
    ip_prefix: z.number().int().optional(),
    iat: z.number().int(),
    exp: z.number().int(),
    jti: z.string(),
    cnf: z.object({ jkt: z.string() }).optional(),
    /** The upstreams the token opens; absent from tokens minted before names existed (`default` only). */
    upstreams: z.array(z.string()).optional(),
  }),
]);

export type ClaimRequest = z.infer<typeof claimRequest>;
export type ClientTokenResponse = z.infer<typeof clientTokenResponse>;
export type ClaimResponse = z.infer<typeof claimResponse>;
export type UpstreamTokenResponse = z.infer<typeof upstreamTokenResponse>;
export type UpstreamReadiness = z.infer<typeof upstreamReadiness>;
