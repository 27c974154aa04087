import { type Challenge, solveChallenge } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/pbkdf2';
import { appOrigin } from './broker.js';
import { registerSecret } from './logs.js';

/** Settings that keep a `pow` solve to a few milliseconds in tests. */
export const powEnv = {
  CLIENT_TOKEN_ATTESTATION: 'pow',
  CLIENT_TOKEN_ATTESTATION_POW_DIFFICULTY: '1',
  CLIENT_TOKEN_ATTESTATION_POW_COST: '1',
};

interface Requester {
  request(options: {
    path: string;
    headers?: Record<string, string>;
  }): Promise<{ status: number; body: string }>;
}

/** A challenge from `/api/client-token/challenge`, asked as a page of `origin` would. */
export async function fetchChallenge(broker: Requester, origin = appOrigin): Promise<Challenge> {
  const answer = await broker.request({ path: '/api/client-token/challenge', headers: { origin } });
  if (answer.status !== 200) throw new Error(`no challenge: ${answer.status} ${answer.body}`);
  return JSON.parse(answer.body) as Challenge;
}

/** The `Attestation` header the ALTCHA widget would send for `challenge`: base64 of `{challenge, solution}`. */
export async function solve(challenge: Challenge): Promise<string> {
  const solution = await solveChallenge({ challenge, deriveKey });
  if (!solution) throw new Error('challenge not solved');
  // Registered: a proof must never reach a log line.
  return registerSecret('pow proof', btoa(JSON.stringify({ challenge, solution })));
}

/** A challenge asked for `origin` and solved. */
export async function powProof(broker: Requester, origin = appOrigin): Promise<string> {
  return solve(await fetchChallenge(broker, origin));
}
