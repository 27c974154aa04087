import { randomBytes } from 'node:crypto';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  generateSecret,
  importJWK,
  type JWK,
} from 'jose';
import { CliFailure } from './context.js';

/** The algorithms the broker signs client tokens with (see docs/security.md and docs/configuration.md, SIGNING_KEYS). */
export const signingAlgorithms = ['EdDSA', 'ES256', 'HS256'] as const;
export type SigningAlgorithm = (typeof signingAlgorithms)[number];

export interface JwkSet {
  keys: JWK[];
}

/** JWK members that hold private or secret key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2). */
const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

export function isSigningAlgorithm(value: string): value is SigningAlgorithm {
  return (signingAlgorithms as readonly string[]).includes(value);
}

/**
 * A new private signing JWK with `alg`, `use: "sig"` and a `kid`. Asymmetric keys get their RFC 7638
 * thumbprint as kid, so the kid names the key without revealing anything; a thumbprint of an `oct`
 * key would be a hash of the secret itself, so those get a random kid instead.
 */
export async function generateSigningKey(alg: SigningAlgorithm, kid?: string): Promise<JWK> {
  if (alg === 'HS256') {
    const secret = await generateSecret('HS256', { extractable: true });
    const jwk = await exportJWK(secret);
    return { kid: kid ?? randomBytes(16).toString('base64url'), alg, use: 'sig', ...jwk };
  }
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { kid: kid ?? (await calculateJwkThumbprint(jwk, 'sha256')), alg, use: 'sig', ...jwk };
}

/** Parses a JWK Set (RFC 7517 §5); `source` names where it came from in the error. */
export function parseJwkSet(text: string, source: string): JwkSet {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CliFailure(`${source} is not JSON; expected a JWK Set {"keys":[...]}`);
  }
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (
    !Array.isArray(keys) ||
    !keys.every((key) => typeof key === 'object' && key !== null && !Array.isArray(key))
  ) {
    throw new CliFailure(`${source} is not a JWK Set {"keys":[...]}`);
  }
  return { keys: keys as JWK[] };
}

/**
 * The public half of a set, for verifiers. Symmetric (`oct`) keys have no public half: publishing
 * one would publish the secret, so they are left out and counted.
 */
export function toPublicJwks(set: JwkSet): { jwks: JwkSet; omitted: number } {
  const asymmetric = set.keys.filter((key) => key.kty !== 'oct');
  const keys = asymmetric.map((key) => {
    const copy: Record<string, unknown> = { ...key };
    for (const member of [...privateMembers, 'key_ops', 'ext', 'nbf']) delete copy[member];
    return copy as JWK;
  });
  return { jwks: { keys }, omitted: set.keys.length - asymmetric.length };
}

function algorithmOf(key: JWK): string | undefined {
  if (key.kty === 'OKP' && key.crv === 'Ed25519') return 'EdDSA';
  if (key.kty === 'EC' && key.crv === 'P-256') return 'ES256';
  if (key.kty === 'oct') return 'HS256';
  return undefined;
}

/**
 * What would stop the broker signing with this set: unsupported or mismatched algorithms, missing
 * private parts, keys that do not import, duplicate kids. Never quotes key material.
 */
export async function checkSigningKeys(set: JwkSet): Promise<string[]> {
  const problems: string[] = [];
  const kids = new Set<string>();
  for (const [index, key] of set.keys.entries()) {
    const label = `key ${index + 1}${typeof key.kid === 'string' ? ` (kid ${key.kid})` : ''}`;
    const inferred = algorithmOf(key);
    const alg = key.alg ?? inferred;
    if (alg === undefined || !isSigningAlgorithm(alg)) {
      problems.push(`${label} is not an EdDSA (Ed25519), ES256 (P-256) or HS256 key`);
      continue;
    }
    if (alg !== inferred) {
      problems.push(`${label} says alg ${alg} but its kty is ${String(key.kty)}`);
      continue;
    }
    const secretMember = key.kty === 'oct' ? 'k' : 'd';
    if (typeof key[secretMember] !== 'string') {
      problems.push(`${label} has no private part ("${secretMember}"); SIGNING_KEYS holds private keys`);
      continue;
    }
    try {
      await importJWK(key, alg);
    } catch {
      problems.push(`${label} cannot be imported as an ${alg} key`);
    }
    if (typeof key.kid === 'string') {
      if (kids.has(key.kid)) problems.push(`${label} repeats a kid; every key needs its own`);
      kids.add(key.kid);
    }
  }
  return problems;
}
