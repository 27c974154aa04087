import { createHmac, pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { type Challenge, createChallenge } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/pbkdf2';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { AttestationConfig } from '../config/attestation.js';
import {
  type AttestationPass,
  type AttestationProvider,
  type AttestationRefusal,
  failed,
} from './provider.js';

export const challengePath = '/api/client-token/challenge';

const algorithm = 'PBKDF2/SHA-256';
const pbkdf2Async = promisify(pbkdf2);
const hex = /^(?:[0-9a-f]{2}){1,64}$/;

/** The payload the ALTCHA widget and the browser helper send: base64 of `JSON.stringify({challenge, solution})`. */
const payloadSchema = z.object({
  challenge: z.object({
    // Signed as a whole: any field changed, added or dropped makes it a tampered challenge.
    parameters: z.looseObject({
      algorithm: z.string(),
      nonce: z.string().regex(hex),
      salt: z.string().regex(hex),
      cost: z.number(),
      keyLength: z.number(),
      keyPrefix: z.string(),
      expiresAt: z.number(),
      data: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
    }),
    signature: z.string().regex(hex),
  }),
  solution: z.object({ counter: z.number().int().min(0).max(0xffffffff), derivedKey: z.string().regex(hex) }),
});

/** ALTCHA's canonical JSON: keys sorted at every level, `undefined` members dropped. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, member: unknown) =>
    member !== null && typeof member === 'object' && !Array.isArray(member)
      ? Object.fromEntries(Object.entries(member).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : member,
  );
}

export interface PowProvider extends AttestationProvider {
  /** A signed challenge bound to `origin`, solvable until the configured ttl runs out. */
  challenge(origin: string): Promise<Challenge>;
}

export interface PowOptions {
  settings: AttestationConfig['attestation']['pow'];
  /** Signs challenges; the fleet shares it (derivedSecret.ts). ALTCHA's HMAC key is its base64url text. */
  secret: Buffer;
  clock: Clock;
}

/**
 * A self-hosted proof of work in ALTCHA's v2 format, so a page may also show the ALTCHA widget. Challenges
 * are made by altcha-lib in its non-deterministic mode: random parameters, no key derivation; the solver
 * searches for a counter whose PBKDF2-SHA-256 key starts with `difficulty` zero hex digits, and checking
 * a solution costs one derivation of `cost` iterations. The HMAC over the parameters is ALTCHA's
 * (HMAC-SHA-256, hex, over the canonical JSON) but computed with node:crypto: altcha-lib imports its key
 * through WebCrypto on every call, which alone cost about 80 µs here, against a budget of 200 µs per
 * challenge and per verification. test/attestation/powFormat.test.ts holds both to altcha-lib's own
 * `verifySolution`.
 * @see https://altcha.org/docs/v2/
 */
export function createPowProvider({ settings, secret, clock }: PowOptions): PowProvider {
  // The key as ALTCHA takes it, a string (its UTF-8 bytes), so altcha-lib verifies these challenges too.
  const key = secret.toString('base64url');
  const sign = (parameters: unknown) => createHmac('sha256', key).update(canonicalJson(parameters)).digest();
  const howToProve = `GET ${challengePath} from this origin, solve it (ALTCHA, ${algorithm}) and send the base64 {challenge, solution} payload in the Attestation header; client.js does this itself`;
  const renew = `GET ${challengePath} for a new challenge`;
  return {
    name: 'pow',
    howToProve,
    async challenge(origin) {
      const { parameters } = await createChallenge({
        algorithm,
        cost: settings.cost,
        keyPrefix: '0'.repeat(settings.difficulty),
        deriveKey,
        expiresAt: Math.floor(clock.now() / 1000) + settings.ttlSeconds,
        data: { origin },
      });
      return { parameters, signature: sign(parameters).toString('hex') };
    },
    async verify({ proof, origin }): Promise<AttestationPass | AttestationRefusal> {
      let payload: z.infer<typeof payloadSchema>;
      try {
        payload = payloadSchema.parse(JSON.parse(Buffer.from(proof, 'base64').toString('utf8')));
      } catch {
        return failed('malformed', `the Attestation header is not an ALTCHA payload: ${howToProve}`);
      }
      const { challenge, solution } = payload;
      const { parameters } = challenge;
      const signature = Buffer.from(challenge.signature, 'hex');
      const expected = sign(parameters);
      if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
        return failed('invalid_signature', `the challenge was not issued by this broker: ${renew}`);
      }
      const expiresAt = parameters.expiresAt * 1000;
      if (expiresAt <= clock.now()) return failed('expired', `the challenge has expired: ${renew}`);
      // Signed with the challenge, so only a page of that origin could have asked for it.
      if (parameters.data?.origin !== origin) {
        return failed('origin_mismatch', `the challenge was issued for another origin: ${renew}`);
      }
      // The counter as ALTCHA v2 appends it to the nonce: 4 bytes, big-endian.
      const nonce = Buffer.from(parameters.nonce, 'hex');
      const password = Buffer.alloc(nonce.length + 4);
      nonce.copy(password);
      password.writeUInt32BE(solution.counter, nonce.length);
      // The derivation altcha-lib's PBKDF2/SHA-256 makes, through node:crypto: its WebCrypto path imports
      // the password as a key first, which nearly doubled a verification's CPU (about 205 µs against 110).
      const salt = Buffer.from(parameters.salt, 'hex');
      const derived = (
        await pbkdf2Async(password, salt, parameters.cost, parameters.keyLength, 'sha256')
      ).toString('hex');
      if (derived !== solution.derivedKey || !derived.startsWith(parameters.keyPrefix)) {
        return failed('invalid_solution', `the solution does not solve the challenge: ${renew}`);
      }
      // One token per challenge, whichever of its solutions is sent.
      return { once: challenge.signature, expiresAt };
    },
  };
}
