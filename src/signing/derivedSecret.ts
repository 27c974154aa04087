import { hkdfSync, randomBytes } from 'node:crypto';

/**
 * A 32-byte server-side secret for one purpose (`info`), derived (HKDF, RFC 5869) from `SIGNING_KEYS`:
 * already secret and shared by every replica, so the fleet agrees on it with no new setting. It changes
 * when `SIGNING_KEYS` does. Without `SIGNING_KEYS` (development) the signing key is ephemeral, and so is this.
 */
export function deriveSecret(
  signingKeys: { keys: Record<string, unknown>[] } | undefined,
  info: string,
): Buffer {
  return signingKeys
    ? Buffer.from(hkdfSync('sha256', JSON.stringify(signingKeys.keys), Buffer.alloc(0), info, 32))
    : randomBytes(32);
}
