import { createHmac } from 'node:crypto';
import { deriveSecret } from '../signing/derivedSecret.js';

/** Names the API key that claimed a token (the claim token's `sub`), for audit. */
export type ApiKeyLabeler = (key: string) => string;

/**
 * `api-key:` and an HMAC-SHA256 of the key under a server-side secret. A plain hash of the key would let
 * anyone holding a claim token test guesses of the key offline; the HMAC cannot be computed without the
 * secret, which is derived from `SIGNING_KEYS` (derivedSecret.ts), so the fleet agrees on each key's label.
 */
export function createApiKeyLabeler(
  signingKeys: { keys: Record<string, unknown>[] } | undefined,
): ApiKeyLabeler {
  const secret = deriveSecret(signingKeys, 'token-broker api-key label');
  return (key) =>
    `api-key:${createHmac('sha256', secret).update(key, 'utf8').digest('base64url').slice(0, 22)}`;
}
