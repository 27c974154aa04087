import type { IncomingMessage } from 'node:http';
import type { ApiKeyVerifier } from '../../auth/apiKeys.js';
import { BrokerError } from '../../errors.js';

/** `Authorization: Bearer <key>` (RFC 6750 §2.1); the scheme is case-insensitive (RFC 9110 §11.1). */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match?.[1];
}

/** Throws `invalid_api_key` unless `presented` is a configured broker API key. */
export function requireApiKey(verifier: ApiKeyVerifier, presented: string | undefined): void {
  if (!verifier.verify(presented)) {
    throw new BrokerError('invalid_api_key', {
      detail:
        verifier.count === 0
          ? 'this broker has no API keys (BROKER_API_KEYS is empty), so it refuses every key'
          : presented
            ? 'the API key is not valid'
            : 'an API key is required (Authorization: Bearer <key>)',
      headers: { 'WWW-Authenticate': 'Bearer realm="token-broker"' },
    });
  }
}
