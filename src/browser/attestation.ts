import type { PowProof } from './pow/solve.js';
import type { BrokerClientEvent, FetchFunction } from './types.js';

export interface PowAttestationOptions {
  challengeUrl: string;
  fetch: FetchFunction;
  emit: (event: BrokerClientEvent) => void;
  /** The error to fail with when no challenge can be had (the broker's `attestation_required`). */
  refusal: (response: Response) => Promise<Error>;
}

/**
 * The `pow` proof: a challenge from the broker, solved by the solver chunk (`/pow.js`, next to
 * `/client.js`), which is loaded only now, so pages that never need a proof never download it.
 */
export function powAttestation({
  challengeUrl,
  fetch,
  emit,
  refusal,
}: PowAttestationOptions): () => Promise<string> {
  return async () => {
    // POST for the same reason as the token request: a same-origin GET carries no `Origin`.
    const response = await fetch(challengeUrl, { method: 'POST' });
    if (!response.ok) throw await refusal(response);
    const challenge = await response.json();
    const solver: { solvePow(challenge: unknown): Promise<PowProof> } = await import(
      /* @vite-ignore */ new URL('./pow.js', import.meta.url).href
    );
    const { payload, solver: where, ms } = await solver.solvePow(challenge);
    emit({ type: 'attestation', solver: where, ms });
    return payload;
  };
}
