import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  randomUUID,
} from 'node:crypto';
import { SignJWT } from 'jose';
import type { Clock } from '../clock.js';

/** The JWS algorithms a client key may sign with; the key type decides which one. */
export type ClientAssertionAlgorithm = 'RS256' | 'PS256' | 'ES256' | 'EdDSA';

/**
 * The private key of `private_key_jwt`, imported once at start-up. Only the imported KeyObject is kept:
 * it serialises to `{}`, so a config object logged by mistake shows no key material.
 */
export interface ClientKey {
  key: KeyObject;
  alg: ClientAssertionAlgorithm;
  /** From the JWK; sent as the `kid` header so the server picks the right registered key. */
  kid: string | undefined;
  /** RFC 7638 thumbprint of the public key: identifies the key in the cache key and in logs. */
  thumbprint: string;
}

/** @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2 */
export const clientAssertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * Lifetime of one assertion. Short, because a captured assertion is a credential until it expires;
 * servers remember `jti`s at least that long (RFC 7523 §3 item 7), so short also keeps their cache small.
 */
export const assertionLifetimeSeconds = 60;

/** RFC 7518 §3.3: RSA keys for RS256/PS256 must be 2048 bits or larger. */
const minRsaBits = 2048;

/**
 * RFC 7638 §3.2: the required public members only, in lexicographic order, hashed with SHA-256.
 * Written out rather than jose's `calculateJwkThumbprint` because that one is async and this runs inside
 * the synchronous `loadConfig`.
 * @see https://www.rfc-editor.org/rfc/rfc7638#section-3
 */
function thumbprintOf(key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  const members =
    jwk.kty === 'RSA'
      ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
      : jwk.kty === 'EC'
        ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
        : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function algorithmFor(key: KeyObject, declared: unknown): ClientAssertionAlgorithm | string {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519')
    return declared === undefined || declared === 'EdDSA' ? 'EdDSA' : 'alg must be EdDSA';
  if (type === 'ec') {
    if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return 'an EC key must be on curve P-256';
    return declared === undefined || declared === 'ES256' ? 'ES256' : 'alg must be ES256';
  }
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < minRsaBits) {
      return `an RSA key must have at least ${minRsaBits} bits`;
    }
    if (declared === undefined || declared === 'RS256') return 'RS256';
    return declared === 'PS256' ? 'PS256' : 'alg must be RS256 or PS256';
  }
  return 'must be an Ed25519, P-256 or RSA key';
}

/**
 * Reads `UPSTREAM_CLIENT_KEY`: a private JWK, or a JWK Set whose first key signs (the output of
 * `token-broker keys generate`). Returns the imported key, or one line saying what is wrong: the line
 * never quotes the value.
 */
export function parseClientKey(text: string): ClientKey | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'must be a private JWK or a JWK Set holding one ({"keys":[...]})';
  }
  const set = parsed as { keys?: unknown } | null;
  const jwk = Array.isArray(set?.keys) ? (set.keys[0] as unknown) : parsed;
  if (typeof jwk !== 'object' || jwk === null) return 'must be a private JWK or a JWK Set holding one';
  const fields = jwk as Record<string, unknown>;
  if (fields.kty === 'oct') {
    return 'is a shared secret (oct/HS256); private_key_jwt needs an Ed25519, P-256 or RSA private key';
  }
  if (typeof fields.d !== 'string') return 'must be a private key (the JWK has no "d")';
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: fields as JsonWebKey, format: 'jwk' });
  } catch {
    return 'is not a usable private JWK (EdDSA/Ed25519, ES256/P-256 or RS256/RSA)';
  }
  const alg = algorithmFor(key, fields.alg);
  if (!['RS256', 'PS256', 'ES256', 'EdDSA'].includes(alg)) return alg;
  const kid = typeof fields.kid === 'string' && fields.kid !== '' ? fields.kid : undefined;
  return { key, alg: alg as ClientAssertionAlgorithm, kid, thumbprint: thumbprintOf(key) };
}

export interface ClientAssertionSigner {
  /** A new assertion for `audience`: fresh `jti`, `iat` now, `exp` a minute later. One per request. */
  sign(audience: string): Promise<string>;
}

/**
 * Signs `private_key_jwt` client assertions. `iss` and `sub` are the client id; `aud` is whatever the
 * caller passes (the token endpoint, or the issuer). Every call makes a new `jti`: servers refuse a
 * reused one (RFC 7523 §3 item 7, OIDC Core §9), so a retry must never resend an old assertion.
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-3
 * @see https://openid.net/specs/openid-connect-core-1_0.html#ClientAuthentication
 */
export function createClientAssertionSigner({
  clientKey,
  clientId,
  clock,
}: {
  clientKey: ClientKey;
  clientId: string;
  clock: Clock;
}): ClientAssertionSigner {
  const header = { alg: clientKey.alg, typ: 'JWT', ...(clientKey.kid ? { kid: clientKey.kid } : {}) };
  return {
    sign(audience) {
      const issuedAt = Math.floor(clock.now() / 1000);
      return new SignJWT({})
        .setProtectedHeader(header)
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(audience)
        .setJti(randomUUID())
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + assertionLifetimeSeconds)
        .sign(clientKey.key);
    },
  };
}
