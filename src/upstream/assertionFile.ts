import { readFile as readFileAsync } from 'node:fs/promises';
import { decodeJwt } from 'jose';
import type { Clock } from '../clock.js';
import { UpstreamError } from '../errors.js';

/**
 * `client_assertion_type` values for a JWT the platform issued to the workload: RFC 7523's, which
 * Azure AD, Keycloak and most servers take, or the SPIFFE client authentication draft's for JWT-SVIDs.
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 * @see https://datatracker.ietf.org/doc/draft-ietf-oauth-spiffe-client-auth/
 */
export const federatedAssertionTypes = {
  'jwt-bearer': 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  'jwt-spiffe': 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe',
} as const;

export type FederatedAssertionType = keyof typeof federatedAssertionTypes;

/** What the broker knows of a federated JWT: not its signature (the authorization server checks that). */
export interface FederatedAssertion {
  jwt: string;
  /** `iss` and `sub`: the workload's identity, the same across the platform's rotations of the file. */
  identity: string;
  /** `exp`, in ms since the epoch. */
  expiresAt: number;
}

const compactJws = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The JWT in an assertion file, or one line saying what is wrong (never quoting the file). */
export function parseFederatedAssertion(text: string): FederatedAssertion | string {
  const jwt = text.trim();
  if (!compactJws.test(jwt)) return 'does not hold a JWT (header.payload.signature in base64url)';
  let claims: ReturnType<typeof decodeJwt>;
  try {
    claims = decodeJwt(jwt);
  } catch {
    return 'does not hold a JWT (its payload is not a JSON object)';
  }
  if (typeof claims.exp !== 'number') return 'holds a JWT without "exp"';
  if (typeof claims.iss !== 'string' || typeof claims.sub !== 'string') {
    return 'holds a JWT without "iss" and "sub"';
  }
  return { jwt, identity: JSON.stringify([claims.iss, claims.sub]), expiresAt: claims.exp * 1000 };
}

/** An assertion that expires sooner than this is not sent: it could lapse on its way to the server. */
const minRemainingMs = 10_000;

/**
 * Reads the assertion file for each token request. The platform writes a fresh JWT well before the old
 * one expires (the kubelet at 80 % of its lifetime, spiffe-helper at half), so reading the file when a
 * token is needed always sends the newest, and a token request comes once per upstream token lifetime.
 * A missing, malformed or expired file is `invalid_client_assertion`: a configuration error, refused as
 * `upstream_rejected` and retried within seconds, so the broker is ready again as soon as it is fixed.
 */
export function createAssertionFileReader({
  clock,
  readFile = (path) => readFileAsync(path, 'utf8'),
}: {
  clock: Clock;
  readFile?: (path: string) => Promise<string>;
}): (path: string) => Promise<string> {
  const refuse = (description: string) =>
    new UpstreamError('invalid_client_assertion', {
      description: `the client assertion file ${description}`,
    });
  return async (path) => {
    let text: string;
    try {
      text = await readFile(path);
    } catch (error) {
      throw refuse(`cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const assertion = parseFederatedAssertion(text);
    if (typeof assertion === 'string') throw refuse(assertion);
    if (assertion.expiresAt - clock.now() < minRemainingMs) {
      throw refuse(`holds a JWT that expired at ${new Date(assertion.expiresAt).toISOString()}`);
    }
    return assertion.jwt;
  };
}
