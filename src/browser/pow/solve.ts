/**
 * The proof-of-work solver (`/pow.js`), loaded by the helper only when the broker asks for a `pow` proof.
 * It searches in Web Workers (altcha-lib's `solveChallengeWorkers`); where a Content-Security-Policy or
 * the browser refuses a worker, it searches on the page's own thread in slices of a few milliseconds, so
 * the page keeps answering input while it works.
 * @module
 */
import { type Challenge, type Solution, solveChallengeWorkers } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/web/pbkdf2';

/** The `Attestation` header for a solved challenge, and how it was found. */
export interface PowProof {
  payload: string;
  solver: 'worker' | 'main';
  ms: number;
}

/** How long the page's thread searches before it lets the page handle input and paint. */
const sliceMs = 8;

let workerUrl: Promise<string> | undefined;

/**
 * A worker script must have the page's origin. When the helper comes from the broker's own origin
 * (another than the page's), the script is fetched (served with CORS) and run from a `blob:` URL.
 */
function workerScript(): Promise<string> {
  const url = new URL('./pow-worker.js', import.meta.url);
  workerUrl ??=
    url.origin === location.origin
      ? Promise.resolve(url.href)
      : fetch(url)
          .then((response) => response.blob())
          .then((blob) => URL.createObjectURL(new Blob([blob], { type: 'text/javascript' })));
  return workerUrl;
}

async function inWorkers(challenge: Challenge): Promise<Solution | null> {
  const script = await workerScript();
  return solveChallengeWorkers({
    challenge,
    concurrency: Math.min(navigator.hardwareConcurrency || 2, 4),
    createWorker: () => new Worker(script),
  });
}

/** ALTCHA's search (the v2 counter: 4 bytes big-endian after the nonce), in slices of `sliceMs`. */
async function onThisThread(challenge: Challenge): Promise<Solution | null> {
  const { nonce, salt, keyPrefix } = challenge.parameters;
  const bytes = (hex: string) =>
    new Uint8Array((hex.match(/../g) ?? []).map((pair) => Number.parseInt(pair, 16)));
  const password = new Uint8Array(nonce.length / 2 + 4);
  password.set(bytes(nonce));
  const view = new DataView(password.buffer);
  const saltBytes = bytes(salt);
  for (let counter = 0, sliceEnd = performance.now() + sliceMs; counter <= 0xffffffff; counter += 1) {
    view.setUint32(password.length - 4, counter);
    const { derivedKey } = await deriveKey(challenge.parameters, saltBytes, password);
    const hex = Array.from(derivedKey, (byte) => byte.toString(16).padStart(2, '0')).join('');
    if (hex.startsWith(keyPrefix)) return { counter, derivedKey: hex };
    if (performance.now() > sliceEnd) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      sliceEnd = performance.now() + sliceMs;
    }
  }
  return null;
}

/** Solves `challenge`, in workers when the page allows them, else on this thread. */
export async function solvePow(challenge: Challenge): Promise<PowProof> {
  const started = performance.now();
  let solver: PowProof['solver'] = 'worker';
  let solution = await inWorkers(challenge).catch(() => undefined);
  if (solution === undefined) {
    solver = 'main';
    solution = await onThisThread(challenge);
  }
  if (!solution) throw new Error('the proof-of-work challenge was not solved');
  return {
    payload: btoa(JSON.stringify({ challenge, solution })),
    solver,
    ms: Math.round(performance.now() - started),
  };
}
