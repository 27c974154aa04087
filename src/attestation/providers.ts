import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import type { Config } from '../config/index.js';
import { deriveSecret } from '../signing/derivedSecret.js';
import { createAppCheckProvider } from './appCheck.js';
import { createPowProvider } from './pow.js';
import type { AttestationProvider } from './provider.js';
import { createSiteverifyProvider } from './siteverify.js';

/** The provider `CLIENT_TOKEN_ATTESTATION` names, or undefined for `none`. */
export function createAttestationProvider({
  config,
  clock,
  dispatcher,
}: {
  config: Config;
  clock: Clock;
  dispatcher?: Dispatcher | undefined;
}): AttestationProvider | undefined {
  const { attestation } = config;
  switch (attestation.provider) {
    case 'none':
      return undefined;
    case 'pow':
      return createPowProvider({
        settings: attestation.pow,
        secret: deriveSecret(config.signingKeys, 'token-broker pow challenge'),
        clock,
      });
    case 'turnstile':
    case 'hcaptcha':
    case 'recaptcha':
      return createSiteverifyProvider({
        name: attestation.provider,
        // loadConfig refuses a siteverify provider without its secret.
        settings: { ...attestation.siteverify, secret: attestation.siteverify.secret ?? '' },
        siteKey: attestation.siteKey,
        clock,
        dispatcher,
      });
    case 'app-check':
      return createAppCheckProvider({
        // loadConfig refuses app-check without its project number.
        settings: { ...attestation.appCheck, projectNumber: attestation.appCheck.projectNumber ?? '' },
        clock,
      });
  }
}
