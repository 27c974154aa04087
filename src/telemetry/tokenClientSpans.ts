import type { Grant } from '../upstream/profiles.js';
import type { TokenClient } from '../upstream/types.js';
import { inSpan, spanAttributes, spanNames, type Tracer } from './spans.js';

/**
 * Wraps a token client so every request to the token endpoint is a span: its grant and its attempt
 * number, counted from 1 since the last token obtained (a failed renewal, or a refused refresh token
 * followed by client credentials, each count one). The token client adds the answer's status
 * (tokenClient.ts); the token itself never reaches the span.
 */
export function traceTokenClient(client: TokenClient, tracer: Tracer): TokenClient {
  /** Requests since the last token obtained, this one included. */
  let attempt = 0;
  function traced<T>(grant: Grant['type'], call: () => Promise<T>): Promise<T> {
    attempt += 1;
    const attributes = { [spanAttributes.grant]: grant, [spanAttributes.attempt]: attempt };
    return inSpan(tracer, spanNames.tokenRequest, attributes, async () => {
      const result = await call();
      attempt = 0;
      return result;
    });
  }
  return {
    clientCredentials: (credentials) =>
      traced('client_credentials', () => client.clientCredentials(credentials)),
    refresh: (refreshToken, credentials) =>
      traced('refresh_token', () => client.refresh(refreshToken, credentials)),
    tokenEndpoint: () => client.tokenEndpoint(),
    close: async () => client.close?.(),
  };
}
