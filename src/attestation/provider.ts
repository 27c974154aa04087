import type { AttestationProviderName } from '../config/attestation.js';
import { BrokerError } from '../errors.js';

/** Why a proof was refused: a bounded set, so it can label a metric and a log line. */
export type AttestationReason =
  | 'missing'
  | 'malformed'
  | 'expired'
  | 'invalid_signature'
  | 'invalid_solution'
  | 'origin_mismatch'
  | 'replayed'
  | 'rejected'
  | 'wrong_action'
  | 'provider_unavailable';

/**
 * A proof refused (`attestation_failed`) or absent (`attestation_required`), with why. The gate names the
 * provider and the page's origin for the access line; the proof itself is never logged.
 */
export class AttestationRefusal extends BrokerError {
  declare readonly code: 'attestation_required' | 'attestation_failed';
  readonly reason: AttestationReason;
  constructor(
    code: 'attestation_required' | 'attestation_failed',
    reason: AttestationReason,
    detail: string,
    logged?: { provider: string; origin: string },
  ) {
    super(code, { detail, logged: { ...logged, reason } });
    this.reason = reason;
  }
}

/** A proof the provider accepted: `once` names it (never the proof itself) until `expiresAt` (ms). */
export interface AttestationPass {
  once: string;
  expiresAt: number;
}

export interface AttestationInput {
  /** The `Attestation` header as sent. */
  proof: string;
  /** The request's allowed origin: every proof is checked against it. */
  origin: string;
  /** The caller's address, for providers that take it (`remoteip`). */
  ip: string;
}

/**
 * One way of proving that a real page asks for the token. `verify` checks the proof alone; accepting it
 * once fleet-wide is the gate's (gate.ts), which remembers `once` only after the proof verified, so that
 * garbage never fills the replay store.
 */
export interface AttestationProvider {
  readonly name: Exclude<AttestationProviderName, 'none'>;
  /** What a page must send, for the `detail` of `attestation_required`. */
  readonly howToProve: string;
  verify(input: AttestationInput): Promise<AttestationPass | AttestationRefusal>;
  /** What `/api/client-token/challenge` answers a page of `origin`: a `pow` challenge, or the widget's site key. */
  challenge?(origin: string): Promise<object>;
}

export const failed = (reason: AttestationReason, detail: string) =>
  new AttestationRefusal('attestation_failed', reason, detail);
