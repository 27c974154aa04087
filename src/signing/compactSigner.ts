import { createHmac, KeyObject, sign } from 'node:crypto';
import type { SigningAlgorithm, UsableKey } from './keys.js';

/** Signs a JSON payload under a fixed protected header; resolves with the JWS Compact Serialization. */
export type CompactSigner = (payload: object) => Promise<string>;

/**
 * A signer for the hot path: the protected header is encoded once and the key converted to a node
 * `KeyObject` once, where jose's `SignJWT` validates and re-encodes both on every call. Ed25519 and
 * P-256 signatures are computed on libuv's thread pool, which keeps the event loop free to serve requests.
 * @see https://www.rfc-editor.org/rfc/rfc7515#section-7.1
 */
export function createCompactSigner(key: UsableKey, header: { kid: string; typ: string }): CompactSigner {
  const encodedHeader = base64url(JSON.stringify({ alg: key.alg, ...header }));
  const signature = signatureFunction(key.alg, KeyObject.from(key.key));
  return async (payload) => {
    const signingInput = `${encodedHeader}.${base64url(JSON.stringify(payload))}`;
    const signed = await signature(Buffer.from(signingInput));
    return `${signingInput}.${signed.toString('base64url')}`;
  };
}

function signatureFunction(alg: SigningAlgorithm, key: KeyObject): (data: Buffer) => Promise<Buffer> {
  switch (alg) {
    case 'EdDSA':
      // Ed25519 hashes internally: no digest is named (RFC 8037 §3.1).
      return (data) => signOnThreadPool(null, data, key);
    case 'ES256':
      // JWS carries R || S, not the DER encoding OpenSSL defaults to (RFC 7518 §3.4).
      return (data) => signOnThreadPool('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
    case 'HS256':
      // An HMAC costs less than the hop to the thread pool would (RFC 7518 §3.2).
      return async (data) => createHmac('sha256', key).update(data).digest();
  }
}

function signOnThreadPool(
  digest: string | null,
  data: Buffer,
  key: KeyObject | { key: KeyObject; dsaEncoding: 'ieee-p1363' },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    sign(digest, data, key, (error, signature) => (error ? reject(error) : resolve(signature)));
  });
}

const base64url = (text: string) => Buffer.from(text).toString('base64url');
