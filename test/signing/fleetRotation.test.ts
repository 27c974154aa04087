import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultActivateInSeconds } from '../../src/cli/keys.js';
import { runCli } from '../../src/cli/run.js';
import { createManualClock } from '../../src/clock.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { privateJwk } from '../support/signingKeys.js';

const seconds = 1_000;
/** What an independent verifier does with `/.well-known/jwks.json`: fetch it, then trust it this long. */
const consumerCacheMs = 300 * seconds;

describe('signing keys rotated across a fleet', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tb-fleet-keys-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('when two replicas see the rotated key file 20 s apart, then every token either mints verifies on both and on a JWKS consumer caching for 5 minutes', async () => {
    const start = Date.UTC(2026, 11, 2, 12, 0, 0);
    const clock = createManualClock(start);
    const files = [join(dir, 'replica-1.json'), join(dir, 'replica-2.json')];
    const initial = JSON.stringify({ keys: [{ ...(await privateJwk('EdDSA', 'k1')), alg: 'EdDSA' }] });
    for (const file of files) writeFileSync(file, initial);
    const shared = {
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_KEY_PREFIX: `tb-fleet-keys-${randomBytes(4).toString('hex')}:`,
      CACHE_ENCRYPTION_KEY: registerSecret('cache key', randomBytes(32).toString('base64')),
      LOG_LEVEL: 'info',
    };
    const replicas = await Promise.all(
      files.map((file) =>
        startBroker({
          upstream: 'fake',
          api: 'fixed',
          clock,
          logLevel: 'info',
          reload: { watchFiles: false },
          env: { ...shared, SIGNING_KEYS_FILE: file },
        }),
      ),
    );
    const [first, second] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];

    let consumerKeys: JSONWebKeySet | undefined;
    let consumerFetchedAt = Number.NEGATIVE_INFINITY;
    /** The consumer fetches from the replica that sees the rotation last: the worst moment to cache. */
    const consumerVerifies = async (token: string) => {
      if (clock.now() - consumerFetchedAt >= consumerCacheMs) {
        consumerKeys = JSON.parse(
          (await second.request({ path: '/.well-known/jwks.json' })).body,
        ) as JSONWebKeySet;
        consumerFetchedAt = clock.now();
      }
      await jwtVerify(token, createLocalJWKSet(consumerKeys as JSONWebKeySet), {
        currentDate: new Date(clock.now()),
        issuer: first.config.clientToken.issuer,
        audience: first.config.clientToken.audience,
      });
    };

    const rotationAt = start + 290 * seconds;
    const activation = rotationAt + defaultActivateInSeconds * seconds;
    const failures: string[] = [];
    const signedBy: { at: number; kid: unknown }[] = [];
    for (let now = start; now <= activation + 100 * seconds; now += 10 * seconds) {
      clock.set(now);
      if (now === rotationAt) {
        const rotated = await runCli(
          ['keys', 'rotate', files[0] as string, '--kid', 'k2'],
          {
            env: {},
            cwd: dir,
            stdout: () => undefined,
            stderr: () => undefined,
            readStdin: async () => '',
            secrets: new Set(),
            clock,
          },
          'test',
        );
        expect(rotated).toBe(0);
        registerSecret(
          'rotated signing key',
          JSON.stringify(JSON.parse(readFileSync(files[0] as string, 'utf8'))),
        );
        expect((await first.broker.reloader?.reload('file'))?.outcome).toBe('applied');
      }
      if (now === rotationAt + 20 * seconds) {
        writeFileSync(files[1] as string, readFileSync(files[0] as string));
        expect((await second.broker.reloader?.reload('file'))?.outcome).toBe('applied');
      }
      for (const minter of replicas) {
        const token = await minter.clientToken(appOrigin);
        signedBy.push({ at: now, kid: decodeProtectedHeader(token).kid });
        for (const verifier of replicas) {
          const answer = await verifier.request({
            path: '/api/proxy/things',
            headers: { authorization: `Bearer ${token}`, origin: appOrigin },
          });
          if (answer.status !== 200) failures.push(`${now - start} ms: replica refused (${answer.status})`);
        }
        await consumerVerifies(token).catch((error: Error) =>
          failures.push(`${now - start} ms: consumer refused (${error.message})`),
        );
      }
    }

    expect(failures).toEqual([]);
    expect(signedBy.filter(({ at }) => at < activation).every(({ kid }) => kid === 'k1')).toBe(true);
    expect(signedBy.filter(({ at }) => at >= activation).every(({ kid }) => kid === 'k2')).toBe(true);
    expect(signedBy.some(({ kid }) => kid === 'k2')).toBe(true);
    const published = JSON.parse(
      (await first.request({ path: '/.well-known/jwks.json' })).body,
    ) as JSONWebKeySet;
    expect(published.keys.map((key) => key.kid)).toEqual(['k2', 'k1']);
    expect(published.keys.every((key) => !('nbf' in key) && !('d' in key))).toBe(true);
  });
});
