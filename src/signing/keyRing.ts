import type { SigningKeys } from './keys.js';

/** The signing keys of the current configuration generation, replaced whole by a reload. */
export interface SigningKeyRing extends SigningKeys {
  replace(next: SigningKeys): void;
}

/**
 * Holds one loaded key set and answers for it until `replace` puts the next one in place: a token being
 * minted keeps the key it started with, and from the next call on the new set signs and verifies.
 */
export function createSigningKeyRing(initial: SigningKeys): SigningKeyRing {
  let current = initial;
  return {
    get signer() {
      return current.signer;
    },
    verificationKey: (kid) => current.verificationKey(kid),
    get publicJwks() {
      return current.publicJwks;
    },
    get activations() {
      return current.activations;
    },
    replace(next) {
      current = next;
    },
  };
}
