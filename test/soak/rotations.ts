import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../src/cli/run.js';
import { registerSecret } from '../support/logs.js';
import { waitFor } from '../support/waiting.js';
import { type ChaosEnvironment, newSecrets } from './environment.js';

/**
 * One rotation of each kind of secret the broker reloads (issue #22), each done the way
 * docs/operations.md tells an operator to, on a fleet whose replicas share one secret volume. Each
 * resolves once every replica serves the new secret and the old one is gone where it can go.
 */

export const rotationKinds = [
  'signing-keys',
  'client-secret',
  'api-keys',
  'cache-key',
  'redis-password',
] as const;
export type RotationKind = (typeof rotationKinds)[number];

/** Seconds from `keys rotate` to the new key signing: time for every replica to read the file. */
export const signingActivationSeconds = 5;

export const rotations: Record<RotationKind, (env: ChaosEnvironment) => Promise<void>> = {
  /** `keys rotate` on the operator's copy, then the Secret updated: the key signs once activated. */
  async 'signing-keys'(env) {
    const file = join(env.workDir, 'signing-keys.json');
    const quiet = () => undefined;
    const status = await runCli(
      ['keys', 'rotate', file, '--activate-in', String(signingActivationSeconds), '--keep', '20'],
      {
        env: {},
        cwd: env.workDir,
        stdout: quiet,
        stderr: quiet,
        readStdin: async () => '',
        secrets: new Set(),
      },
      'soak',
    );
    if (status !== 0) throw new Error(`keys rotate exited with ${status}`);
    const keys = registerSecret('soak signing keys', readFileSync(file, 'utf8').trim());
    await env.rotateFiles({ 'signing-keys': keys });
  },

  /** The authorization server accepts both secrets while the file changes, then drops the old one. */
  async 'client-secret'(env) {
    const old = env.secrets['client-secret'];
    const next = newSecrets.clientSecret();
    env.acceptedSecrets.add(next);
    await env.rotateFiles({ 'client-secret': next });
    env.acceptedSecrets.delete(old);
  },

  /** Add the new key, move the clients to it, remove the old key once no request carries it. */
  async 'api-keys'(env) {
    const old = env.apiKey;
    const next = newSecrets.apiKey();
    await env.rotateFiles({ 'api-keys': `${old},${next}` });
    env.apiKey = next;
    await waitFor(() => (env.apiKeyInFlight.get(old) ?? 0) === 0, 30_000);
    await env.rotateFiles({ 'api-keys': next });
  },

  /** One step: the previous keys still decrypt what the fleet stored. */
  async 'cache-key'(env) {
    await env.rotateFiles({ 'cache-key': newSecrets.cacheKey() });
  },

  /**
   * Redis accepts both passwords while the file changes; then the old one is dropped and every
   * connection cut, so the replicas must reconnect with the new one.
   */
  async 'redis-password'(env) {
    const old = env.secrets['redis-password'];
    const next = newSecrets.redisPassword();
    await env.withRedis((redis) => redis.call('ACL', 'SETUSER', 'default', `>${next}`));
    await env.rotateFiles({ 'redis-password': next });
    await env.withRedis(async (redis) => {
      await redis.call('ACL', 'SETUSER', 'default', `<${old}`);
      await redis.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    });
  },
};
