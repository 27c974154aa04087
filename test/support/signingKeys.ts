import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Config } from '../../src/config/index.js';
import { registerSecret } from './logs.js';

/** The client token settings the signing suites share: the defaults, with exact IP binding. */
export const clientTokenConfig: Config['clientToken'] = {
  ttlSeconds: 900,
  bindIp: 'exact',
  ipv4Prefix: 24,
  ipv6Prefix: 64,
  issuer: 'urn:token-broker',
  audience: 'urn:token-broker:proxy',
  clockToleranceSeconds: 5,
};

/** A random HS256 secret as an `oct` JWK; the secret is registered. */
export function secretJwk(kid: string, bytes = 32): JWK {
  const k = registerSecret('HS256 secret', randomBytes(bytes).toString('base64url'));
  return { kty: 'oct', k, kid };
}

/** A fresh private JWK (HS256: a secret); its private part is registered. */
export async function privateJwk(alg: 'EdDSA' | 'ES256' | 'HS256', kid?: string): Promise<JWK> {
  if (alg === 'HS256') return secretJwk(kid ?? 'hs');
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret(`${alg} private key`, jwk.d ?? '');
  return kid === undefined ? jwk : { ...jwk, kid };
}

/** A private Ed25519 JWK Set with one key, as `SIGNING_KEYS` takes it. */
export async function signingKeySet(kid: string = randomUUID()): Promise<string> {
  return JSON.stringify({ keys: [{ ...(await privateJwk('EdDSA', kid)), alg: 'EdDSA', use: 'sig' }] });
}
