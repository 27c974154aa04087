import { base64url } from 'jose';

/** Signs the JWS signing input (`header.payload`, RFC 7515 §5.1) and returns the raw signature. */
export type RawSigner = (input: Uint8Array<ArrayBuffer>) => Promise<ArrayBuffer>;

/** base64url of UTF-8 text, unpadded (RFC 7515 §2). */
export const encode = (text: string): string => base64url.encode(new TextEncoder().encode(text));

/**
 * Builds a compact JWS from raw JSON text, so tests can write what jose would never produce (`1e309`,
 * `alg: none` with a signature, a payload that is itself a JWT).
 */
export async function forge(
  header: object | string,
  claims: object | string,
  sign: RawSigner,
): Promise<string> {
  const head = encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = encode(typeof claims === 'string' ? claims : JSON.stringify(claims));
  const signature = await sign(new TextEncoder().encode(`${head}.${body}`));
  return `${head}.${body}.${base64url.encode(new Uint8Array(signature))}`;
}

/** An Ed25519 signer over a private CryptoKey. */
export const ed25519 =
  (key: CryptoKey): RawSigner =>
  (input) =>
    crypto.subtle.sign('Ed25519', key, input);

/** An HMAC-SHA-256 signer with `secret` as the raw key (the "public key as HS256 secret" attack). */
export const hmac =
  (secret: Uint8Array): RawSigner =>
  async (input) => {
    const key = await crypto.subtle.importKey(
      'raw',
      new Uint8Array(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    return crypto.subtle.sign('HMAC', key, input);
  };

/** Answers the same few bytes whatever the input: a signature that belongs to no key. */
export const junkSignature: RawSigner = async () => new Uint8Array([1, 2, 3]).buffer;

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Other spellings of a compact JWS whose signature decodes to the same bytes: the last base64url
 * character of a segment whose length is not a multiple of 4 carries unused low bits (RFC 4648 §3.5),
 * which lenient decoders ignore. Empty when the signature has no spare bits.
 */
export function signatureSpellings(token: string): string[] {
  const cut = token.lastIndexOf('.');
  const signature = token.slice(cut + 1);
  const spareBits = [0, 0, 4, 2][signature.length % 4] ?? 0;
  if (spareBits === 0) return [];
  const last = alphabet.indexOf(signature.at(-1) ?? '');
  const mask = (1 << spareBits) - 1;
  const spellings: string[] = [];
  for (let low = 0; low <= mask; low += 1) {
    const index = (last & ~mask) | low;
    if (index !== last) spellings.push(`${token.slice(0, -1)}${alphabet[index]}`);
  }
  return spellings;
}
