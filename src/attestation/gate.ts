import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import type { ReplayCache } from '../dpop/replayCache.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { type AttestationProvider, AttestationRefusal, failed } from './provider.js';

/** Asks for, checks and spends the proof a client token needs (`CLIENT_TOKEN_ATTESTATION`). */
export interface AttestationGate {
  /**
   * Resolves when the request may have a token: a proof verified and not seen before anywhere in the
   * fleet, or one of the address's tokens without a proof. Throws an AttestationRefusal otherwise.
   * `log` is the request's logger, read only for a refusal.
   */
  check(request: {
    req: IncomingMessage;
    proof: string | undefined;
    origin: string;
    ip: string;
    log: () => Logger;
  }): Promise<void>;
}

export interface AttestationGateOptions {
  provider: AttestationProvider;
  /** Proofs spent: fleet-wide with Redis (the DPoP replay store's machinery, its own namespace). */
  replays: ReplayCache;
  /**
   * With `CLIENT_TOKEN_ATTESTATION_AFTER`: counts one token without a proof for the address, and says
   * whether it is still within the allowance. Undefined: every token needs a proof.
   */
  allowance?: ((req: IncomingMessage) => Promise<boolean>) | undefined;
  /** `CLIENT_TOKEN_ATTESTATION_FAIL_OPEN`: mint when the provider could not check the proof. */
  failOpen?: boolean;
  metrics: Metrics;
  clock: Clock;
}

export function createAttestationGate({
  provider,
  replays,
  allowance,
  failOpen = false,
  metrics,
  clock,
}: AttestationGateOptions): AttestationGate {
  const refuse = (refusal: AttestationRefusal, origin: string): never => {
    metrics.recordAttestation(provider.name, 'refused', refusal.reason);
    // What the provider said about the proof stays out of the access line: `reason` is enough to act on.
    throw new AttestationRefusal(refusal.code, refusal.reason, refusal.detail ?? '', {
      provider: provider.name,
      origin,
    });
  };
  return {
    async check({ req, proof, origin, ip, log }) {
      if (proof === undefined || proof === '') {
        if (allowance && (await allowance(req))) {
          metrics.recordAttestation(provider.name, 'allowance', '');
          return;
        }
        refuse(
          new AttestationRefusal('attestation_required', 'missing', `send a proof: ${provider.howToProve}`),
          origin,
        );
      }
      const verdict = await provider.verify({ proof: proof as string, origin, ip });
      if (verdict instanceof AttestationRefusal) {
        if (failOpen && verdict.reason === 'provider_unavailable') {
          metrics.recordAttestation(provider.name, 'failed_open', verdict.reason);
          log().warn(
            { origin, provider: provider.name, reason: verdict.reason },
            'attestation provider unavailable: minting without a checked proof (CLIENT_TOKEN_ATTESTATION_FAIL_OPEN)',
          );
          return;
        }
        refuse(verdict, origin);
      } else {
        // Hashed: the replay store names a proof without holding it.
        const key = createHash('sha256').update(`${provider.name}\n${verdict.once}`).digest('base64url');
        const seen = await replays.checkAndRemember(key, Math.max(verdict.expiresAt - clock.now(), 1000));
        if (seen !== 'new') refuse(failed('replayed', 'this proof was already used: get a new one'), origin);
        metrics.recordAttestation(provider.name, 'passed', '');
      }
    },
  };
}
