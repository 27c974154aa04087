import { createHash } from 'node:crypto';
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  EmbeddedJWK,
  errors,
  type JWK,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { BrokerError } from '../errors.js';
import { isCanonicalCompactJws } from '../signing/base64url.js';
import type { ReplayCache } from './replayCache.js';

/** The `typ` of a DPoP proof (RFC 9449 §4.2). */
export const dpopProofType = 'dpop+jwt';

/**
 * Asymmetric algorithms only: a proof is signed by a key the client alone holds, so `none` and every
 * MAC (HS*) are refused (RFC 9449 §4.3 step 5). WebCrypto in every browser does ES256.
 */
export const dpopAlgorithms = ['ES256', 'EdDSA'] as const;

/** The challenge sent with every refusal (RFC 9449 §7.1): the scheme, the error and what we verify. */
export const dpopChallenge = `DPoP error="invalid_dpop_proof", algs="${dpopAlgorithms.join(' ')}"`;

/** Refused before any parsing: a proof with a P-256 key is about 500 bytes. */
const maxProofLength = 4096;
/** Members that only a private (or symmetric) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). */
const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

const claimsSchema = z.object({
  jti: z.string().min(1).max(256),
  htm: z.string().min(1),
  htu: z.string().min(1).max(8192),
  iat: z.number(),
  ath: z.string().optional(),
});

/** What a proof must match: the request it came with, and at a resource the token it accompanies. */
export interface ProofExpectation {
  /** The `DPoP` header as received. */
  proof: string | undefined;
  /** The request's method. */
  method: string;
  /** This request's absolute URL as the client addressed the broker (http/requestUrl.ts). */
  url: string | undefined;
  /**
   * `token` (the client-token route: a bad proof is 400, RFC 9449 §5) or `resource` (the proxy: 401,
   * and the proof must carry `ath` of `accessToken` and be signed by the key with thumbprint `jkt`).
   */
  endpoint: 'token' | 'resource';
  accessToken?: string;
  jkt?: string;
}

export interface VerifiedProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's key, for `cnf.jkt` (RFC 9449 §6.1). */
  jkt: string;
}

export interface DpopProofVerifier {
  /** The proof's key thumbprint, or a BrokerError `invalid_dpop_proof` saying which check failed. */
  verify(expectation: ProofExpectation): Promise<VerifiedProof>;
}

export interface DpopProofVerifierOptions {
  clock: Clock;
  replayCache: ReplayCache;
  /**
   * A proof's `iat` may be this many seconds in the past or in the future (clock skew). Default 30: short,
   * so that remembered proofs expire soon (`DPOP_PROOF_MAX_AGE`).
   */
  windowSeconds?: number;
}

/** `ath`: base64url SHA-256 of the ASCII access token (RFC 9449 §4.2). */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * Verifies DPoP proofs as RFC 9449 §4.3 lists the checks: one well-formed JWT, `typ` `dpop+jwt`, an
 * asymmetric `alg`, a public `jwk` that verifies the signature, `htm` and `htu` of this request, `iat`
 * inside the window, a `jti` never seen before, and at a resource `ath` and the bound key. No
 * `DPoP-Nonce` is issued (§8): the `iat` window plus the replay cache bound the reuse of a proof.
 */
export function createDpopProofVerifier({
  clock,
  replayCache,
  windowSeconds = 30,
}: DpopProofVerifierOptions): DpopProofVerifier {
  return {
    async verify({ proof, method, url, endpoint, accessToken, jkt: boundJkt }) {
      /** The reason goes to the log through `cause`; `detail` is safe to show the client. */
      const refuse = (reason: string, detail: string) =>
        new BrokerError('invalid_dpop_proof', {
          detail,
          status: endpoint === 'token' ? 400 : 401,
          headers: { 'WWW-Authenticate': dpopChallenge },
          cause: new Error(`DPoP proof refused: ${reason}`),
        });

      // Node joins repeated `DPoP` fields with a comma, which no compact JWS contains: two proofs fail
      // here, as §4.3 step 1 asks.
      if (!proof) throw refuse('missing', 'send a DPoP proof in the DPoP header');
      if (proof.length > maxProofLength || !isCanonicalCompactJws(proof)) {
        throw refuse('shape', 'the DPoP header is not one compact JWS in canonical base64url');
      }
      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(proof);
      } catch {
        throw refuse('header', 'the proof header cannot be decoded');
      }
      if (header.typ !== dpopProofType) throw refuse('typ', `the proof's typ must be ${dpopProofType}`);
      if (!(dpopAlgorithms as readonly unknown[]).includes(header.alg)) {
        throw refuse('alg', `the proof must be signed with ${dpopAlgorithms.join(' or ')}`);
      }
      const jwk = header.jwk;
      if (typeof jwk !== 'object' || jwk === null) throw refuse('jwk', 'the proof header has no jwk');
      if (privateMembers.some((member) => member in jwk)) {
        throw refuse('private jwk', 'the proof jwk holds private key material');
      }

      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(proof, EmbeddedJWK, {
          typ: dpopProofType,
          algorithms: [...dpopAlgorithms],
          currentDate: new Date(clock.now()),
        }));
      } catch (error) {
        const code = error instanceof errors.JOSEError ? error.code : 'error';
        throw refuse(`signature (${code})`, 'the proof signature does not verify with its jwk');
      }
      const parsed = claimsSchema.safeParse(payload);
      if (!parsed.success) throw refuse('claims', 'the proof must carry jti, htm, htu and iat');
      const claims = parsed.data;

      if (claims.htm !== method) throw refuse('htm', 'the proof was made for another method');
      if (!sameResource(claims.htu, url)) throw refuse('htu', 'the proof was made for another URL');
      const now = clock.now() / 1000;
      if (claims.iat < now - windowSeconds) throw refuse('iat stale', 'the proof is too old');
      if (claims.iat > now + windowSeconds) throw refuse('iat future', 'the proof is dated in the future');

      const jkt = await calculateJwkThumbprint(jwk as JWK, 'sha256');
      if (endpoint === 'resource') {
        if (accessToken === undefined || claims.ath !== accessTokenHash(accessToken)) {
          throw refuse('ath', 'the proof was made for another access token');
        }
        if (jkt !== boundJkt)
          throw refuse('jkt', 'the proof was signed by another key than the token is bound to');
      }

      // Checked last, so a proof refused for another reason does not use up its jti.
      const ttlMs = (claims.iat + windowSeconds) * 1000 - clock.now() + 1000;
      // Scoped to the key, so one client's jti can never collide with (and lock out) another's.
      const key = createHash('sha256').update(`${jkt}\n${claims.jti}`).digest('base64url');
      const seen = await replayCache.checkAndRemember(key, ttlMs, jkt);
      if (seen === 'replay') throw refuse('replay', 'the proof has been used before');
      if (seen === 'forgotten') {
        throw refuse(
          'forgotten',
          'the proof is older than the proofs this broker still remembers: make a new one',
        );
      }
      if (seen === 'owner_full') {
        // Not the client's fault in kind but in volume: it may retry with a new proof once this passes.
        throw new BrokerError('rate_limited', {
          detail: 'too many DPoP proofs by this key within the proof window; slow down and retry',
          headers: { 'Retry-After': String(windowSeconds) },
        });
      }
      return { jkt };
    },
  };
}

/**
 * RFC 9449 §4.3 step 9: `htu` matches the request URL without query and fragment, after RFC 3986
 * §6.2.2-6.2.3 normalisation. WHATWG URL parsing lower-cases scheme and host, drops a default port and
 * resolves dot segments; percent-encodings are then compared with upper-case hex and unreserved
 * characters decoded.
 */
function sameResource(htu: string, url: string | undefined): boolean {
  if (url === undefined) return false;
  let claimed: URL;
  let actual: URL;
  try {
    claimed = new URL(htu);
    actual = new URL(url);
  } catch {
    return false;
  }
  return (
    claimed.protocol === actual.protocol &&
    claimed.host === actual.host &&
    normalizePath(claimed.pathname) === normalizePath(actual.pathname)
  );
}

function normalizePath(path: string): string {
  return path.replace(/%[0-9A-Fa-f]{2}/g, (encoded) => {
    const char = String.fromCharCode(Number.parseInt(encoded.slice(1), 16));
    return /[A-Za-z0-9\-._~]/.test(char) ? char : encoded.toUpperCase();
  });
}
