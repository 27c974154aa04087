import type { DpopSigner } from './types.js';

export interface DpopSignerOptions {
  /** Milliseconds since the epoch, for `iat`. Default `Date.now`. */
  now?: () => number;
  /** Default `globalThis.crypto`. */
  crypto?: Crypto;
}

/**
 * Makes DPoP proofs (RFC 9449 §4.2) with an ECDSA P-256 key that WebCrypto creates non-extractable: page
 * scripts can have it sign, but nothing can read it out, so a token bound to it is useless anywhere
 * else. The key lives in this object only, made on first use: a reload makes a new key and the helper
 * fetches a new token. (IndexedDB could keep the CryptoKey across reloads, still non-extractable; for
 * tokens that live minutes it is not worth keeping key material on disk.) The broker issues no
 * `DPoP-Nonce`, so none is sent.
 */
export function createDpopSigner({
  now = () => Date.now(),
  crypto = globalThis.crypto,
}: DpopSignerOptions = {}): DpopSigner {
  if (!crypto?.subtle)
    throw new TypeError('DPoP needs WebCrypto: serve the page over https or from localhost');
  const encoder = new TextEncoder();
  let keys: Promise<{ privateKey: CryptoKey; jwk: JsonWebKey }> | undefined;

  function keyPair(): Promise<{ privateKey: CryptoKey; jwk: JsonWebKey }> {
    keys ??= (async () => {
      const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      // A public key is always exportable; only its public members go into the proofs.
      const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', pair.publicKey);
      return { privateKey: pair.privateKey, jwk: { kty, crv, x, y } };
    })().catch((error: unknown) => {
      keys = undefined;
      throw error;
    });
    return keys;
  }

  const encodeJson = (value: unknown) => base64url(encoder.encode(JSON.stringify(value)));

  return {
    publicJwk: async () => ({ ...(await keyPair()).jwk }),
    async proof(method, url, accessToken) {
      const { privateKey, jwk } = await keyPair();
      // `htu` is the absolute URL without query and fragment (RFC 9449 §4.2).
      const htu = new URL(url, globalThis.document?.baseURI ?? globalThis.location?.href);
      htu.search = '';
      htu.hash = '';
      const payload: { jti: string; htm: string; htu: string; iat: number; ath?: string } = {
        jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
        htm: method,
        htu: htu.href,
        iat: Math.floor(now() / 1000),
      };
      if (accessToken !== undefined) {
        payload.ath = base64url(
          new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(accessToken))),
        );
      }
      const input = `${encodeJson({ typ: 'dpop+jwt', alg: 'ES256', jwk })}.${encodeJson(payload)}`;
      // WebCrypto's ECDSA signature is r || s, exactly what JWS ES256 wants (RFC 7518 §3.4).
      const signature = await crypto.subtle.sign(
        { name: 'ECDSA', hash: 'SHA-256' },
        privateKey,
        encoder.encode(input),
      );
      return `${input}.${base64url(new Uint8Array(signature))}`;
    },
  };
}

function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
