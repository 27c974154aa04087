import { randomUUID } from 'node:crypto';
import { type Dispatcher, request } from 'undici';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { AttestationConfig, SiteverifyProviderName } from '../config/attestation.js';
import {
  type AttestationPass,
  type AttestationProvider,
  type AttestationRefusal,
  failed,
} from './provider.js';

/** The documented answer, shared by Turnstile, hCaptcha and reCAPTCHA; other members are ignored. */
const answerSchema = z.object({
  success: z.boolean(),
  challenge_ts: z.string().optional(),
  hostname: z.string().optional(),
  action: z.string().optional(),
  'error-codes': z.array(z.string()).optional(),
});

/** Provider tokens are at most 2,048 characters (Turnstile's documented limit); anything longer is not one. */
const maxProofLength = 4096;
const maxAnswerBytes = 16_384;

export interface SiteverifyOptions {
  name: SiteverifyProviderName;
  settings: AttestationConfig['attestation']['siteverify'] & { secret: string };
  siteKey: string | undefined;
  clock: Clock;
  dispatcher?: Dispatcher | undefined;
}

/**
 * Turnstile, hCaptcha and reCAPTCHA: the page's widget yields a response token, which the broker hands
 * to the provider's siteverify endpoint (form-encoded `secret`, `response`, `remoteip`, and for Turnstile
 * an `idempotency_key`). The answer must say `success`, name the request's origin as `hostname`, carry the
 * configured `action`, and be recent. A timeout, a 5xx or an unreadable answer is `provider_unavailable`:
 * refused unless `CLIENT_TOKEN_ATTESTATION_FAIL_OPEN` lets the gate through.
 * @see https://developers.cloudflare.com/turnstile/get-started/server-side-validation/
 * @see https://docs.hcaptcha.com/#verify-the-user-response-server-side
 * @see https://developers.google.com/recaptcha/docs/verify
 */
export function createSiteverifyProvider({
  name,
  settings,
  siteKey,
  clock,
  dispatcher,
}: SiteverifyOptions): AttestationProvider {
  const { secret, verifyUrl, action, maxAgeSeconds, timeoutMs } = settings;
  const howToProve = `render the ${name} widget${siteKey ? ` (site key ${siteKey})` : ''} and send its response token in the Attestation header, through client.js's attestation option`;
  const unavailable = failed('provider_unavailable', `${name} could not check the proof; try again`);

  async function ask(proof: string, ip: string): Promise<unknown> {
    const form = new URLSearchParams({ secret, response: proof, remoteip: ip });
    // Turnstile answers a retry with the same key as it answered the first try, instead of `duplicate`.
    if (name === 'turnstile') form.set('idempotency_key', randomUUID());
    const answer = await request(verifyUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
      ...(dispatcher ? { dispatcher } : {}),
      signal: AbortSignal.timeout(timeoutMs),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await answer.body.text();
    if (answer.statusCode !== 200 || text.length > maxAnswerBytes) return undefined;
    return JSON.parse(text);
  }

  return {
    name,
    howToProve,
    challenge: async () => ({ provider: name, ...(siteKey ? { siteKey } : {}) }),
    async verify({ proof, origin, ip }): Promise<AttestationPass | AttestationRefusal> {
      if (proof.length > maxProofLength)
        return failed('malformed', `not a ${name} response token: ${howToProve}`);
      let parsed: z.infer<typeof answerSchema>;
      try {
        const answer = answerSchema.safeParse(await ask(proof, ip));
        if (!answer.success) return unavailable;
        parsed = answer.data;
      } catch {
        return unavailable;
      }
      const errors = parsed['error-codes'] ?? [];
      if (!parsed.success) {
        return errors.includes('timeout-or-duplicate')
          ? failed('replayed', `the ${name} token expired or was already used: solve the widget again`)
          : failed('rejected', `${name} refused the token: solve the widget again`);
      }
      if (parsed.hostname !== new URL(origin).hostname) {
        return failed('origin_mismatch', `the ${name} token was solved on another site than ${origin}`);
      }
      if (action !== undefined && parsed.action !== action) {
        return failed('wrong_action', `the ${name} widget must be rendered with action "${action}"`);
      }
      const solvedAt = Date.parse(parsed.challenge_ts ?? '');
      const expiresAt = solvedAt + maxAgeSeconds * 1000;
      if (Number.isNaN(solvedAt) || expiresAt <= clock.now()) {
        return failed('expired', `the ${name} token is too old: solve the widget again`);
      }
      return { once: proof, expiresAt };
    },
  };
}
