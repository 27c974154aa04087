import { createHmac, hkdfSync, randomBytes } from 'node:crypto';

/** Names the API key that claimed a token (the claim token's `sub`), for audit. */
export type ApiKeyLabeler = (key: string) => string;

/**
 * `api-key:` and an HMAC-SHA256 of the key under a server-side secret. A plain hash of the key would let
 * anyone holding a claim token test guesses of the key offline; the HMAC cannot be computed without the
 * secret. The secret is derived (HKDF, RFC 5869) from `SIGNING_KEYS`, already secret and shared by every
 * replica, so the fleet agrees on each key's label with no new setting; it changes when `SIGNING_KEYS`
 * does. Without `SIGNING_KEYS` (development) the signing key is ephemeral, and so is this secret.
 */
export function createApiKeyLabeler(
  signingKeys: { keys: Record<string, unknown>[] } | undefined,
): ApiKeyLabeler {
  const secret = signingKeys
    ? Buffer.from(
        hkdfSync(
          'sha256',
          JSON.stringify(signingKeys.keys),
          Buffer.alloc(0),
          'token-broker api-key label',
          32,
        ),
      )
    : randomBytes(32);
  return (key) =>
    `api-key:${createHmac('sha256', secret).update(key, 'utf8').digest('base64url').slice(0, 22)}`;
}
