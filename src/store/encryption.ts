import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Encrypts values at rest in a shared store. Upstream access and refresh tokens are bearer credentials
 * (RFC 6750 §5.2), so whoever can read Redis (a backup, a `MONITOR`, a neighbour with the password) must
 * not be able to use them.
 */
export interface ValueCipher {
  /** `v1.<tag>.<iv>.<ciphertext>`, authenticated together with `context` (the key name), so a value cannot be moved to another key. */
  encrypt(plaintext: string, context: string): string;
  /** Throws when the value was not written under this key and context (tampered, moved or another key). */
  decrypt(envelope: string, context: string): string;
  /**
   * The envelope prefix every encryption of `plaintext` under `context` starts with: a keyed MAC, so
   * equal values can be compared inside Redis (compare-and-delete) without revealing anything.
   */
  tagPrefix(plaintext: string, context: string): string;
  /** The same prefix under keys replaced by a reload that may still have written stored values, newest first. */
  olderTagPrefixes(plaintext: string, context: string): string[];
}

/** A cipher whose key a reload replaces (`CACHE_ENCRYPTION_KEY_FILE`). */
export interface RotatingCipher extends ValueCipher {
  /** Encrypts under `masterKey` from now on; values written under the keys before it still decrypt. */
  rotate(masterKey: Buffer): void;
}

const version = 'v1';
const ivBytes = 12;
const authTagBytes = 16;

/**
 * Reads `CACHE_ENCRYPTION_KEY`: exactly 32 bytes, as 64 hex digits or base64/base64url (44 or 43
 * characters). Returns undefined for anything else; the message never quotes the value.
 */
export function parseEncryptionKey(value: string): Buffer | undefined {
  const trimmed = value.trim();
  if (/^[0-9a-f]{64}$/i.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (!/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(trimmed)) return undefined;
  const bytes = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return bytes.length === 32 ? bytes : undefined;
}

/**
 * AES-256-GCM (NIST SP 800-38D) with a random 96-bit IV per value: with random IVs a key stays within
 * the SP 800-38D §8.3 bound for 2^32 encryptions, far above what a token cache writes. Separate keys for
 * encryption and for the comparison MAC are derived with HKDF (RFC 5869) from the configured key.
 */
export function createValueCipher(masterKey: Buffer): ValueCipher {
  if (masterKey.length !== 32) throw new Error('CACHE_ENCRYPTION_KEY must be 32 bytes');
  const derive = (info: string) =>
    Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), `token-broker/${info}`, 32));
  const encryptionKey = derive('cache-encryption/v1');
  const macKey = derive('cache-compare/v1');

  const tag = (plaintext: string, context: string) =>
    createHmac('sha256', macKey)
      .update(context)
      .update('\u0000')
      .update(plaintext)
      .digest('base64url')
      .slice(0, 22);

  return {
    encrypt(plaintext, context) {
      const iv = randomBytes(ivBytes);
      const cipher = createCipheriv('aes-256-gcm', encryptionKey, iv);
      cipher.setAAD(Buffer.from(context));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return `${version}.${tag(plaintext, context)}.${iv.toString('base64url')}.${body.toString('base64url')}`;
    },
    decrypt(envelope, context) {
      const [prefix, , ivText, bodyText] = envelope.split('.');
      if (prefix !== version || !ivText || !bodyText) throw new Error('not an encrypted value');
      const iv = Buffer.from(ivText, 'base64url');
      const body = Buffer.from(bodyText, 'base64url');
      if (iv.length !== ivBytes || body.length < authTagBytes) throw new Error('not an encrypted value');
      const decipher = createDecipheriv('aes-256-gcm', encryptionKey, iv);
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(body.subarray(body.length - authTagBytes));
      return Buffer.concat([
        decipher.update(body.subarray(0, body.length - authTagBytes)),
        decipher.final(),
      ]).toString('utf8');
    },
    tagPrefix: (plaintext, context) => `${version}.${tag(plaintext, context)}.`,
    olderTagPrefixes: () => [],
  };
}

/** Keys kept for reading after a rotation: stored tokens are rewritten under the new key as they renew. */
const maxRetiredKeys = 3;

/**
 * Encrypts under the newest key and decrypts under any key it has held since start (the newest few), so a
 * rotated `CACHE_ENCRYPTION_KEY` never makes the tokens the fleet stored unreadable: each is replaced,
 * under the new key, at its next renewal.
 */
export function createRotatingCipher(masterKey: Buffer): RotatingCipher {
  let keys = [{ masterKey, cipher: createValueCipher(masterKey) }];
  const newest = () => (keys[0] as (typeof keys)[number]).cipher;
  return {
    encrypt: (plaintext, context) => newest().encrypt(plaintext, context),
    decrypt(envelope, context) {
      let failure: unknown;
      for (const { cipher } of keys) {
        try {
          return cipher.decrypt(envelope, context);
        } catch (error) {
          failure ??= error;
        }
      }
      throw failure;
    },
    tagPrefix: (plaintext, context) => newest().tagPrefix(plaintext, context),
    olderTagPrefixes: (plaintext, context) =>
      keys.slice(1).map(({ cipher }) => cipher.tagPrefix(plaintext, context)),
    rotate(next) {
      if (keys[0]?.masterKey.equals(next)) return;
      const retired = keys.filter((key) => !key.masterKey.equals(next)).slice(0, maxRetiredKeys);
      keys = [{ masterKey: next, cipher: createValueCipher(next) }, ...retired];
    },
  };
}
