/**
 * The proof-of-work worker (`/pow-worker.js`): altcha-lib's own worker protocol (`work` / `abort`
 * messages, the solution posted back) around its WebCrypto PBKDF2, for `solveChallengeWorkers`.
 * @module
 */
import { deriveKey } from 'altcha-lib/algorithms/web/pbkdf2';
import { handler } from 'altcha-lib/workers/shared';

handler({ deriveKey });
