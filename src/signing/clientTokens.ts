import { decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { z } from 'zod';
import { canonicalIp } from '../caller/ip.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config/index.js';
import { maxUpstreams, upstreamNamePattern } from '../config/namedUpstreams.js';
import { BrokerError } from '../errors.js';
import { isCanonicalCompactJws } from './base64url.js';
import { createCompactSigner } from './compactSigner.js';
import { createJtiSource } from './jtiSource.js';
import type { SigningKeys } from './keys.js';
import type { RevocationList } from './revocations.js';
import { createVerifiedTokens } from './verifiedTokens.js';

/**
 * The explicit `typ` of a client token, so no other JWT signed by a key we trust (or an upstream access
 * token, `at+jwt`) can be replayed as one.
 * @see https://www.rfc-editor.org/rfc/rfc8725#section-3.11
 */
export const clientTokenType = 'client-token+jwt';

/** Refused before any parsing or crypto: our tokens are well under 1 KiB. */
export const maxClientTokenLength = 4096;

const jtiPattern = /^[A-Za-z0-9_-]{22}$/;
/** An RFC 7638 SHA-256 JWK thumbprint, base64url: 43 characters. */
const jktPattern = /^[A-Za-z0-9_-]{43}$/;

/**
 * The claims of a client token as they travel (RFC 7519 §4). `ip` is the caller's canonical address
 * (see ip.ts); `ip_prefix`, when present, says the token is bound to the /ip_prefix network around it.
 */
const payloadSchema = z.object({
  iss: z.string(),
  aud: z.string(),
  sub: z.string().min(1),
  origin: z.string().min(1),
  ip: z
    .string()
    .refine((ip) => canonicalIp(ip) === ip)
    .optional(),
  ip_prefix: z.number().int().min(0).max(128).optional(),
  // zod 4 numbers are finite: `1e309` (Infinity once parsed) is refused here as well as below.
  iat: z.number(),
  exp: z.number(),
  jti: z.string().regex(jtiPattern),
  /** The key the token is bound to (RFC 9449 §6.1): a proof signed by it must come with every use. */
  cnf: z.object({ jkt: z.string().regex(jktPattern) }).optional(),
  /** The upstreams the token opens at the proxy; a token without it opens `default` only. */
  upstreams: z.array(z.string().regex(upstreamNamePattern)).max(maxUpstreams).optional(),
  /** `METHOD /path` rules that narrow what the token may call at the proxy (never widen the upstream's). */
  allow: z.string().min(1).max(2048).optional(),
});

export type ClientTokenClaims = Omit<z.infer<typeof payloadSchema>, 'ip_prefix'> & { ipPrefix?: number };

export interface MintInput {
  sub: string;
  origin: string;
  /** Canonical address (ip.ts `canonicalIp`); omitted for an unbound token. */
  ip?: string | undefined;
  /** Bind to the /ipPrefix network around `ip` rather than to `ip` alone. */
  ipPrefix?: number | undefined;
  /** Bind to the DPoP key with this RFC 7638 thumbprint (`cnf.jkt`, RFC 9449 §6.1). */
  jkt?: string | undefined;
  /** The upstream names the token opens (the `upstreams` claim). */
  upstreams?: readonly string[] | undefined;
  /** Allow-list rules that narrow the token's calls (the `allow` claim), as `formatAllowRules` writes them. */
  allow?: string | undefined;
}

export interface MintedClientToken {
  token: string;
  jti: string;
  /** Seconds since the epoch. */
  iat: number;
  exp: number;
  /** Seconds from now until `exp`. */
  expiresIn: number;
}

export interface ClientTokens {
  mint(input: MintInput): Promise<MintedClientToken>;
  /**
   * The verified claims, or a BrokerError `invalid_client_token` (or `token_revoked`). Origin and IP
   * are compared by the caller, which knows the request.
   */
  verify(token: string): Promise<ClientTokenClaims>;
}

export interface ClientTokensOptions {
  keys: SigningKeys;
  config: Config['clientToken'];
  clock: Clock;
  revocations?: RevocationList;
  /**
   * How many verified tokens to remember, so a token used again skips the signature check until its
   * `exp` (default 10,000: with tokens of up to 4 KiB, some 10–40 MiB at most; 0 turns it off). See verifiedTokens.ts.
   */
  verifiedTokensMax?: number;
}

/** RFC 6750 §3.1: a bad bearer token is `invalid_token`. */
const challenge = { 'WWW-Authenticate': 'Bearer error="invalid_token"' };
const required = ['exp', 'iat', 'jti', 'sub', 'origin'];

export function createClientTokens({
  keys,
  config,
  clock,
  revocations,
  verifiedTokensMax = 10_000,
}: ClientTokensOptions): ClientTokens {
  // The header is encoded once per signing key, not per token; a reload that changes the key makes a new one.
  let signer = keys.signer;
  let signToken = createCompactSigner(signer, { kid: signer.kid, typ: clientTokenType });
  const currentSigner = () => {
    if (keys.signer !== signer) {
      signer = keys.signer;
      signToken = createCompactSigner(signer, { kid: signer.kid, typ: clientTokenType });
    }
    return signToken;
  };
  const tolerance = config.clockToleranceSeconds;
  const nextJti = createJtiSource();
  const verified = createVerifiedTokens<ClientTokenClaims>({ clock, maxEntries: verifiedTokensMax });

  /**
   * The time checks `jwtVerify` made, for a token taken from `verified`: `exp` with tolerance, and `iat`
   * neither in the future nor older than the longest lifetime we mint. As strict as jose, so a token
   * that fails here goes through full verification and is refused with the same reason.
   */
  const stillTimely = ({ iat, exp }: ClientTokenClaims) => {
    const now = Math.floor(clock.now() / 1000);
    const age = now - iat;
    return exp > now - tolerance && age >= -tolerance && age - tolerance <= config.ttlSeconds;
  };

  /** Checked on every call, cached or not: a revocation takes effect at once. */
  const notRevoked = (claims: ClientTokenClaims) => {
    if (revocations?.isRevoked(claims.jti)) {
      throw new BrokerError('token_revoked', { headers: challenge });
    }
    return claims;
  };

  /** The reason goes to the log through `cause`; it names a check, never token content. */
  const refuse = (reason: string, detail?: string) =>
    new BrokerError('invalid_client_token', {
      headers: challenge,
      cause: new Error(`client token refused: ${reason}`),
      ...(detail ? { detail } : {}),
    });

  return {
    async mint({ sub, origin, ip, ipPrefix, jkt, upstreams, allow }) {
      if (ip !== undefined && canonicalIp(ip) !== ip)
        throw new TypeError('mint: ip must be a canonical address');
      if (ipPrefix !== undefined && ip === undefined) throw new TypeError('mint: ipPrefix needs ip');
      if (jkt !== undefined && !jktPattern.test(jkt)) throw new TypeError('mint: jkt must be a thumbprint');
      const iat = Math.floor(clock.now() / 1000);
      const exp = iat + config.ttlSeconds;
      const jti = nextJti();
      const token = await currentSigner()({
        iss: config.issuer,
        aud: config.audience,
        sub,
        origin,
        ...(ip !== undefined ? { ip } : {}),
        ...(ipPrefix !== undefined ? { ip_prefix: ipPrefix } : {}),
        iat,
        exp,
        jti,
        ...(jkt !== undefined ? { cnf: { jkt } } : {}),
        ...(upstreams !== undefined ? { upstreams } : {}),
        ...(allow !== undefined ? { allow } : {}),
      });
      return { token, jti, iat, exp, expiresIn: config.ttlSeconds };
    },

    async verify(token) {
      // Cheap checks first: nothing is parsed or verified for input that cannot be one of ours.
      if (typeof token !== 'string' || token.length > maxClientTokenLength) throw refuse('size');
      const known = verified.get(token);
      if (known !== undefined && stillTimely(known)) return notRevoked(known);
      if (!isCanonicalCompactJws(token)) {
        throw refuse('shape', 'the client token is not a compact JWS in canonical base64url');
      }
      let protectedHeader: ReturnType<typeof decodeProtectedHeader>;
      try {
        protectedHeader = decodeProtectedHeader(token);
      } catch {
        throw refuse('header');
      }
      const { alg, kid, typ } = protectedHeader;
      // Only keys we hold verify: `jku`, `x5u`, `jwk` and `x5c` are never looked at (RFC 8725 §3.10).
      const key = typeof kid === 'string' ? keys.verificationKey(kid) : undefined;
      if (!key) throw refuse('unknown kid');
      if (alg !== key.alg) throw refuse('alg');
      if (typ !== clientTokenType) throw refuse('typ');
      // We define no extension; a nested JWT (`cty`) is never a client token (RFC 7519 §5.2).
      if ('crit' in protectedHeader || 'cty' in protectedHeader) throw refuse('header parameter');

      let payload: unknown;
      try {
        ({ payload } = await jwtVerify(token, key.key, {
          algorithms: [key.alg],
          typ: clientTokenType,
          issuer: config.issuer,
          audience: config.audience,
          clockTolerance: tolerance,
          currentDate: new Date(clock.now()),
          requiredClaims: required,
          // Also refuses an `iat` in the future beyond the tolerance.
          maxTokenAge: config.ttlSeconds,
        }));
      } catch (error) {
        if (error instanceof errors.JWTExpired) throw refuse('expired', 'The client token has expired');
        if (error instanceof errors.JOSEError) {
          const claim = error instanceof errors.JWTClaimValidationFailed ? ` (${error.claim})` : '';
          throw refuse(`${error.code}${claim}`);
        }
        throw refuse('verification');
      }

      const parsed = payloadSchema.safeParse(payload);
      if (!parsed.success) throw refuse('claims');
      const { ip_prefix: ipPrefix, ...claims } = parsed.data;
      // A token living longer than we ever mint was not minted by this configuration: refuse it even
      // when its signature is good (a key leaked to an insider, a forgotten test key).
      const lifetime = claims.exp - claims.iat;
      if (!(lifetime > 0 && lifetime <= config.ttlSeconds + tolerance)) throw refuse('lifetime');
      if (
        ipPrefix !== undefined &&
        (claims.ip === undefined || (!claims.ip.includes(':') && ipPrefix > 32))
      ) {
        throw refuse('ip_prefix');
      }
      // Frozen: one object now answers every call with this token.
      const result: ClientTokenClaims = Object.freeze(
        ipPrefix === undefined ? claims : { ...claims, ipPrefix },
      );
      if (result.cnf) Object.freeze(result.cnf);
      if (result.upstreams) Object.freeze(result.upstreams);
      verified.set(token, result, (claims.exp + tolerance) * 1000);
      return notRevoked(result);
    },
  };
}
