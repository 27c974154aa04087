import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import { type Clock, systemClock } from '../clock.js';
import type { Logger } from '../telemetry/logger.js';

/** The algorithms a client-token key may use: EdDSA by default, ES256, HS256 for Trefle-compatible setups. */
export type SigningAlgorithm = 'EdDSA' | 'ES256' | 'HS256';

/** A key ready to use: imported once at start-up, never per request. */
export interface UsableKey {
  alg: SigningAlgorithm;
  key: CryptoKey;
}

/** The public half of a signing key as published at `/.well-known/jwks.json` (RFC 7517 §4). */
export interface PublicJwk {
  kty: 'OKP' | 'EC';
  crv: 'Ed25519' | 'P-256';
  x: string;
  y?: string;
  kid: string;
  alg: 'EdDSA' | 'ES256';
  use: 'sig';
}

export interface SigningKeys {
  /** The first key of the set whose activation time (`nbf`) has passed: it signs every new token. */
  readonly signer: UsableKey & { kid: string };
  /** The key that verifies tokens carrying this `kid`, or undefined: every key of the set verifies (rotation). */
  verificationKey(kid: string): UsableKey | undefined;
  /** Public parts only; HS256 secrets are never published. Keys not yet active are published too. */
  readonly publicJwks: { keys: PublicJwk[] };
  /** Every key's id and activation time (ms since the epoch; 0 without `nbf`), in the set's order. */
  readonly activations: readonly { kid: string; activatesAt: number }[];
}

export interface LoadSigningKeysOptions {
  /** A private JWK Set (`SIGNING_KEYS`); undefined means an ephemeral key outside production. */
  jwks: { keys: Record<string, unknown>[] } | undefined;
  production: boolean;
  logger: Logger;
  /** Decides which keys are active; the system clock by default. */
  clock?: Clock;
}

interface LoadedKey {
  kid: string;
  /** From the private JWK's `nbf` (seconds since the epoch), in ms; 0 without one. */
  activatesAt: number;
  signing: UsableKey;
  verifying: UsableKey;
  publicJwk: PublicJwk | undefined;
}

/** HS256 keys shorter than the hash output are refused (RFC 7518 §3.2). */
const minHmacBytes = 32;

/**
 * Imports the configured JWK Set once. All keys verify and are published at once; the first key whose
 * activation time has passed signs. A key's activation time is the `nbf` member of its private JWK
 * (seconds since the epoch, as in a JWT; `keys rotate --activate-in`): set later than every replica and
 * every JWKS cache can have seen the key, it lets a fleet switch keys together without talking, since no
 * replica signs with a key another replica or a verifier cannot check yet. Without `nbf` a key is active.
 * Throws an Error naming the offending key by index and kid (never its material) when the set is unusable.
 */
export async function loadSigningKeys({
  jwks,
  production,
  logger,
  clock = systemClock,
}: LoadSigningKeysOptions): Promise<SigningKeys> {
  if (!jwks) {
    if (production) throw new Error('SIGNING_KEYS is required in production (a private JWK Set)');
    const loaded = await ephemeralKey();
    logger.warn(
      { kid: loaded.kid },
      'no SIGNING_KEYS: signing with an ephemeral Ed25519 key; client tokens will not survive a restart and replicas will not agree on them',
    );
    return assemble([loaded], clock);
  }
  if (jwks.keys.length === 0) throw new Error('SIGNING_KEYS holds no keys');
  const loaded: LoadedKey[] = [];
  const kids = new Set<string>();
  for (const [index, jwk] of jwks.keys.entries()) {
    const key = await loadKey(jwk, index);
    if (kids.has(key.kid)) throw new Error(`${describe(index, key.kid)}: duplicate kid`);
    kids.add(key.kid);
    if (key.signing.alg === 'HS256') {
      logger.warn(
        { kid: key.kid },
        'HS256 signing key: every verifier needs the shared secret, which is not published in the JWKS',
      );
    }
    loaded.push(key);
  }
  return assemble(loaded, clock);
}

function assemble(loaded: LoadedKey[], clock: Clock): SigningKeys {
  if (loaded.length === 0) throw new Error('SIGNING_KEYS holds no keys');
  const verifiers = new Map(loaded.map((key) => [key.kid, key.verifying]));
  const signerAt = (now: number) => {
    const key = loaded.find((candidate) => candidate.activatesAt <= now);
    if (!key) throw new Error('SIGNING_KEYS has no active key yet (every "nbf" is in the future)');
    return { kid: key.kid, ...key.signing };
  };
  /** When a key ahead of the signer becomes active; Infinity when none is waiting. */
  const nextSwitch = (now: number) =>
    Math.min(...loaded.filter((key) => key.activatesAt > now).map((key) => key.activatesAt));
  let signer = signerAt(clock.now());
  let switchAt = nextSwitch(clock.now());
  return {
    // One comparison per token while a key is waiting, none otherwise; the signer object stays the same
    // between switches, so its header is encoded once.
    get signer() {
      if (switchAt !== Number.POSITIVE_INFINITY) {
        const now = clock.now();
        if (now >= switchAt) {
          signer = signerAt(now);
          switchAt = nextSwitch(now);
        }
      }
      return signer;
    },
    verificationKey: (kid) => verifiers.get(kid),
    publicJwks: { keys: loaded.flatMap((key) => (key.publicJwk ? [key.publicJwk] : [])) },
    activations: loaded.map(({ kid, activatesAt }) => ({ kid, activatesAt })),
  };
}

async function ephemeralKey(): Promise<LoadedKey> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const { x } = await exportJWK(publicKey);
  if (!x) throw new Error('could not export the ephemeral public key');
  const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x });
  return {
    kid,
    activatesAt: 0,
    signing: { alg: 'EdDSA', key: privateKey },
    verifying: { alg: 'EdDSA', key: publicKey },
    publicJwk: { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' },
  };
}

function describe(index: number, kid: unknown): string {
  return typeof kid === 'string' ? `signing key #${index} (kid "${kid}")` : `signing key #${index}`;
}

const stringMember = (jwk: Record<string, unknown>, name: string): string | undefined =>
  typeof jwk[name] === 'string' && jwk[name] !== '' ? jwk[name] : undefined;

async function loadKey(jwk: Record<string, unknown>, index: number): Promise<LoadedKey> {
  const label = describe(index, jwk.kid);
  const fail = (problem: string): never => {
    throw new Error(`${label}: ${problem}`);
  };
  if (jwk.kid !== undefined && stringMember(jwk, 'kid') === undefined)
    fail('"kid" must be a non-empty string');
  if (jwk.use !== undefined && jwk.use !== 'sig') fail('"use" must be "sig"');
  const alg = inferAlgorithm(jwk, fail);
  if (jwk.alg !== undefined && jwk.alg !== alg) fail(`"alg" must be ${alg} for this key type`);
  if (jwk.nbf !== undefined && !(Number.isSafeInteger(jwk.nbf) && (jwk.nbf as number) >= 0)) {
    fail('"nbf" must be the activation time in whole seconds since the epoch');
  }
  const activatesAt = typeof jwk.nbf === 'number' ? jwk.nbf * 1000 : 0;

  if (alg === 'HS256') {
    const k = stringMember(jwk, 'k') ?? fail('"k" is missing');
    const secret = decodeMember(k, fail);
    if (secret.byteLength < minHmacBytes) fail(`an HS256 secret must be at least ${minHmacBytes * 8} bits`);
    // RFC 7638 thumbprint of {k, kty}: a hash of a secret of 256 bits or more reveals nothing usable.
    const kid = stringMember(jwk, 'kid') ?? (await calculateJwkThumbprint({ kty: 'oct', k }));
    const key = await crypto.subtle.importKey(
      'raw',
      new Uint8Array(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    );
    return { kid, activatesAt, signing: { alg, key }, verifying: { alg, key }, publicJwk: undefined };
  }

  const x = stringMember(jwk, 'x') ?? fail('"x" is missing');
  const y = alg === 'ES256' ? (stringMember(jwk, 'y') ?? fail('"y" is missing')) : undefined;
  if (stringMember(jwk, 'd') === undefined)
    fail('is a public key; a private key (with "d") is required to sign');
  // Only the members that describe the key itself: `key_ops`, `ext` and the like must not restrict the import.
  const publicPart = { kty: jwk.kty as string, crv: jwk.crv as string, x, ...(y ? { y } : {}) };
  const kid = stringMember(jwk, 'kid') ?? (await calculateJwkThumbprint(publicPart));
  let signing: CryptoKey;
  let verifying: CryptoKey;
  try {
    signing = (await importJWK({ ...publicPart, d: jwk.d as string }, alg, {
      extractable: false,
    })) as CryptoKey;
    verifying = (await importJWK(publicPart, alg)) as CryptoKey;
  } catch {
    // WebCrypto also refuses a "d" that does not belong to "x"/"y". Its message may describe the
    // material; say only which key failed.
    return fail('the key material is invalid ("x", "y" and "d" must form one key pair)');
  }
  const publicJwk: PublicJwk =
    alg === 'EdDSA'
      ? { kty: 'OKP', crv: 'Ed25519', x, kid, alg, use: 'sig' }
      : { kty: 'EC', crv: 'P-256', x, ...(y ? { y } : {}), kid, alg, use: 'sig' };
  return { kid, activatesAt, signing: { alg, key: signing }, verifying: { alg, key: verifying }, publicJwk };
}

function inferAlgorithm(jwk: Record<string, unknown>, fail: (problem: string) => never): SigningAlgorithm {
  switch (jwk.kty) {
    case 'OKP':
      return jwk.crv === 'Ed25519' ? 'EdDSA' : fail('OKP keys must use the Ed25519 curve');
    case 'EC':
      return jwk.crv === 'P-256' ? 'ES256' : fail('EC keys must use the P-256 curve (ES256)');
    case 'oct':
      return 'HS256';
    case 'RSA':
      return fail('RSA keys are not supported; use Ed25519 (EdDSA), P-256 (ES256) or an HS256 secret');
    default:
      return fail('"kty" must be OKP (Ed25519), EC (P-256) or oct (HS256)');
  }
}

function decodeMember(value: string, fail: (problem: string) => never): Uint8Array {
  // jose's decoder tolerates some non-alphabet input; a secret must be exactly base64url (RFC 4648 §5).
  if (!/^[A-Za-z0-9_-]+$/.test(value)) fail('"k" is not base64url');
  return base64url.decode(value);
}
