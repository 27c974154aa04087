import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { Clock } from '../clock.js';
import type { AttestationConfig } from '../config/attestation.js';
import {
  type AttestationPass,
  type AttestationProvider,
  type AttestationRefusal,
  failed,
} from './provider.js';

const issuerBase = 'https://firebaseappcheck.googleapis.com/';

export interface AppCheckOptions {
  settings: AttestationConfig['attestation']['appCheck'] & { projectNumber: string };
  clock: Clock;
}

/**
 * Firebase App Check: the page's App Check SDK yields a token, an RS256 JWT that the broker verifies
 * locally against App Check's JWKS (jose fetches it once and keeps it, refetching for an unknown `kid`).
 * `aud` must hold `projects/<project number>` and `iss` be App Check's issuer for that project. The token
 * names the Firebase app (`sub`), not an origin: which sites may obtain one is App Check's attestation
 * provider's own setting (reCAPTCHA's domain list).
 * @see https://firebase.google.com/docs/app-check/custom-resource-backend
 */
export function createAppCheckProvider({ settings, clock }: AppCheckOptions): AttestationProvider {
  const { projectNumber, timeoutMs } = settings;
  const jwks = createRemoteJWKSet(new URL(settings.jwksUrl), { timeoutDuration: timeoutMs });
  const howToProve =
    "send a Firebase App Check token (getToken(appCheck)) in the Attestation header, through client.js's attestation option";
  return {
    name: 'app-check',
    howToProve,
    async verify({ proof }): Promise<AttestationPass | AttestationRefusal> {
      if (proof.length > 8192) return failed('malformed', `not an App Check token: ${howToProve}`);
      try {
        const { payload } = await jwtVerify(proof, jwks, {
          algorithms: ['RS256'],
          typ: 'JWT',
          issuer: `${issuerBase}${projectNumber}`,
          audience: `projects/${projectNumber}`,
          currentDate: new Date(clock.now()),
          requiredClaims: ['exp', 'sub'],
        });
        return { once: proof, expiresAt: (payload.exp as number) * 1000 };
      } catch (error) {
        if (error instanceof errors.JWTExpired)
          return failed('expired', 'the App Check token has expired: get a new one');
        if (error instanceof errors.JWTClaimValidationFailed) {
          return failed(
            'rejected',
            `the App Check token is for another project or issuer than ${projectNumber}`,
          );
        }
        if (
          error instanceof errors.JWKSTimeout ||
          error instanceof errors.JWKSInvalid ||
          isFetchFailure(error)
        ) {
          return failed('provider_unavailable', 'the App Check keys could not be fetched; try again');
        }
        if (
          error instanceof errors.JWSSignatureVerificationFailed ||
          error instanceof errors.JWKSNoMatchingKey
        ) {
          return failed('invalid_signature', 'the App Check token is not signed by App Check');
        }
        return failed('malformed', `not an App Check token: ${howToProve}`);
      }
    },
  };
}

/** jose passes on what fetch threw (a TypeError) or a JOSEError for a non-200 answer of the JWKS. */
function isFetchFailure(error: unknown): boolean {
  return (
    error instanceof TypeError || (error instanceof errors.JOSEError && error.code === 'ERR_JOSE_GENERIC')
  );
}
