import type { RenewableCode } from './types.js';

/** Proxy refusals that a new token can fix. `origin_mismatch` is not one: a new token is bound to the same origin. */
const RENEWABLE_CODES: ReadonlySet<string> = new Set<RenewableCode>([
  'invalid_client_token',
  'ip_mismatch',
  'token_revoked',
  // The token has made its CLIENT_TOKEN_MAX_CALLS calls: a new one (with a new proof, if required) may call again.
  'token_budget_exhausted',
]);

/** A refused DPoP proof: the call is sent once more with the same token and a fresh proof. */
export const PROOF_REFUSED = 'invalid_dpop_proof';

/** The parts of an RFC 9457 problem this helper reads; any member but `code` may be missing or odd. */
export interface Problem {
  code: string;
  title?: unknown;
  detail?: unknown;
}

/**
 * The body of an RFC 9457 problem answer with a `code`, else undefined. An answer from the upstream
 * API passes the proxy untouched and is never mistaken for the broker's.
 */
export async function readProblem(response: Response): Promise<Problem | undefined> {
  const type = (response.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/problem+json') return undefined;
  try {
    const body: unknown = await response.json();
    return body !== null && typeof body === 'object' && 'code' in body && typeof body.code === 'string'
      ? (body as Problem)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The broker's refusal code when the proxy refused the token or its proof (not the upstream API). */
export async function retryableRefusal(response: Response): Promise<string | undefined> {
  // 429 is also the proxy's `rate_limited` and `call_quota_exhausted`, which a new token does not fix.
  if (response.status !== 401 && response.status !== 403 && response.status !== 429) return undefined;
  const problem = await readProblem(response.clone());
  if (!problem) return undefined;
  return RENEWABLE_CODES.has(problem.code) || problem.code === PROOF_REFUSED ? problem.code : undefined;
}

/** `Retry-After` is delay-seconds or an HTTP-date (RFC 9110 §10.2.3); seconds from now, or undefined. */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000));
}
