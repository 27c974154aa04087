import { decodeJwt } from 'jose';

/**
 * The longest lifetime we believe. An upstream claiming more (a typo, `expires_in` in ms, a bug) still
 * gets its token used, but it is renewed within a year rather than trusted for decades.
 */
export const maxLifetimeSeconds = 365 * 24 * 60 * 60;

/**
 * The `exp` of an access token that happens to be a JWT, in ms since the epoch, when it is finite and
 * still in the future. The signature is not checked: the token is opaque to us (RFC 6749 §1.4) and
 * this only tells how long to cache it; the API that receives it does the verifying.
 * @see https://www.rfc-editor.org/rfc/rfc9068#section-2.2
 */
export function jwtExpiresAt(accessToken: string, now: number): number | undefined {
  let exp: unknown;
  try {
    exp = decodeJwt(accessToken).exp;
  } catch {
    return undefined;
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return undefined;
  const expiresAt = exp * 1000;
  return expiresAt > now ? expiresAt : undefined;
}

/**
 * When a token stops being valid, in ms since the epoch: from `expires_in`, else the JWT `exp`, else
 * the configured default. Capped at `maxLifetimeSeconds` from now.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1
 */
export function resolveExpiresAt(options: {
  expiresIn: number | undefined;
  accessToken: string;
  now: number;
  defaultTtlSeconds: number;
}): number {
  const { expiresIn, accessToken, now, defaultTtlSeconds } = options;
  const cap = now + maxLifetimeSeconds * 1000;
  const candidate =
    expiresIn !== undefined
      ? now + Math.round(expiresIn * 1000)
      : (jwtExpiresAt(accessToken, now) ?? now + defaultTtlSeconds * 1000);
  return Math.min(candidate, cap);
}
