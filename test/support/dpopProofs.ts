import { createHash, randomBytes } from 'node:crypto';
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { appOrigin } from './broker.js';
import { registerSecret } from './logs.js';

/** A key pair as a DPoP client holds it: the private key never leaves jose, the public JWK goes in proofs. */
export interface ProofKey {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

export async function proofKey(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const jwk: JWK = y === undefined ? { kty, crv, x } : { kty, crv, x, y };
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

export function ath(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export interface ProofOptions {
  htm: string;
  htu: string;
  /** Seconds; default now. */
  iat?: number;
  jti?: string;
  ath?: string;
  /** Replaces the protected header entirely (typ, alg and jwk included). */
  header?: Record<string, unknown>;
  /** Signs with this key while the header names `key.jwk`. */
  signWith?: CryptoKey;
}

/** A DPoP proof (RFC 9449 §4.2) made the way a correct client makes one, unless told otherwise. */
export function makeProof(key: ProofKey, options: ProofOptions): Promise<string> {
  const alg = key.jwk.kty === 'OKP' ? 'EdDSA' : 'ES256';
  const payload = {
    jti: options.jti ?? randomBytes(16).toString('base64url'),
    htm: options.htm,
    htu: options.htu,
    iat: options.iat ?? Math.floor(Date.now() / 1000),
    ...(options.ath !== undefined ? { ath: options.ath } : {}),
  };
  const header = options.header ?? { typ: 'dpop+jwt', alg, jwk: key.jwk };
  return new SignJWT(payload)
    .setProtectedHeader(header as { alg: string })
    .sign(options.signWith ?? key.privateKey);
}

/** A JWT with `alg: none` (RFC 7519 §6): a header, a payload and an empty signature. */
export function unsignedProof(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const encode = (value: unknown) => base64url.encode(JSON.stringify(value));
  return `${encode(header)}.${encode(payload)}.`;
}

/** The settings of a broker that binds client tokens to DPoP keys, for pages on `appOrigin`. */
export const dpopEnv = { ALLOWED_ORIGINS: appOrigin, CLIENT_TOKEN_BINDING: 'dpop' };

/** Asks `/api/client-token` for a token with a proof by `key`; registers the token with the leak check. */
export async function dpopToken(broker: { url: string }, key: ProofKey): Promise<string> {
  const htu = `${broker.url}/api/client-token`;
  const response = await fetch(htu, {
    method: 'POST',
    headers: { origin: appOrigin, dpop: await makeProof(key, { htm: 'POST', htu }) },
  });
  const body = (await response.json()) as { token?: string; tokenType?: string };
  if (response.status !== 200 || body.tokenType !== 'DPoP' || !body.token) {
    throw new Error(`no DPoP token: ${response.status} ${JSON.stringify(body)}`);
  }
  return registerSecret('dpop client token', body.token);
}
