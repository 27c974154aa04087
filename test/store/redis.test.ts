import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { createRevocationList } from '../../src/signing/revocations.js';
import { createValueCipher, parseEncryptionKey } from '../../src/store/encryption.js';
import { createRedisConnections, type RedisConnections } from '../../src/store/redisConnection.js';
import { createRedisLock } from '../../src/store/redisLock.js';
import { createRedisRevocations } from '../../src/store/redisRevocations.js';
import { createRedisStore } from '../../src/store/redisStore.js';
import { createTokenCache } from '../../src/upstream/tokenCache.js';
import type { TokenClient, UpstreamToken } from '../../src/upstream/types.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { mintToken, upstreamConfigFor } from '../support/oauthServers.js';
import { singleRedis } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../support/sharedRedis.js';
import { startTcpForwarder } from '../support/tcpForwarder.js';

const noRedis = await missing('redis');

const redisUrl = sharedRedisUrl;
const { admin, prefix: newPrefix } = sharedRedisScratch('store');
const opened: RedisConnections[] = [];
const cleanups: (() => void | Promise<void>)[] = [];

async function connect(url = redisUrl) {
  const { logger } = captureLogs();
  const connections = createRedisConnections({ target: singleRedis(url), logger, maxReconnectDelayMs: 100 });
  opened.push(connections);
  expect(await connections.ready(3_000)).toBe('ok');
  return connections;
}

const cipher = createValueCipher(
  Buffer.from(registerSecret('test cache key', randomBytes(32).toString('hex')), 'hex'),
);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

afterAll(async () => {
  await Promise.all(opened.map((connections) => connections.close()));
});

describe('value encryption', () => {
  it('when a value is encrypted twice, then the envelopes differ and each decrypts only under its own key name', () => {
    const first = cipher.encrypt('a secret value', 'k1');
    const second = cipher.encrypt('a secret value', 'k1');
    expect(first).not.toBe(second);
    expect(first).not.toContain('secret');
    expect(cipher.decrypt(second, 'k1')).toBe('a secret value');
    expect(() => cipher.decrypt(first, 'k2')).toThrow();
    const [version, tag, iv, body] = first.split('.');
    const flipped = `${body?.[0] === 'A' ? 'B' : 'A'}${body?.slice(1)}`;
    expect(() => cipher.decrypt(`${version}.${tag}.${iv}.${flipped}`, 'k1')).toThrow();
  });

  it('when a key is given as hex, base64 or base64url, then 32 bytes are accepted and anything else refused', () => {
    const bytes = randomBytes(32);
    expect(parseEncryptionKey(bytes.toString('hex'))).toEqual(bytes);
    expect(parseEncryptionKey(bytes.toString('base64'))).toEqual(bytes);
    expect(parseEncryptionKey(bytes.toString('base64url'))).toEqual(bytes);
    expect(parseEncryptionKey(randomBytes(16).toString('hex'))).toBeUndefined();
    expect(parseEncryptionKey('correct horse battery staple')).toBeUndefined();
  });
});

describe.skipIf(noRedis)('the Redis store', () => {
  it('when a value is stored, then Redis holds ciphertext that expires, and a compare-and-delete spares a newer value', async () => {
    const { client } = await connect();
    const prefix = newPrefix();
    const store = createRedisStore({ client, prefix, cipher });
    const secret = mintToken('store-value');
    await store.set('k', secret, 60_000);
    expect(await admin.get(`${prefix}k`)).not.toContain(secret);
    expect(await admin.pttl(`${prefix}k`)).toBeGreaterThan(59_000);
    expect(await store.get('k')).toBe(secret);

    await store.set('k', 'newer', 60_000);
    expect(await store.deleteIf?.('k', secret)).toBe(false);
    expect(await store.get('k')).toBe('newer');
    expect(await store.deleteIf?.('k', 'newer')).toBe(true);
    expect(await store.get('k')).toBeUndefined();
  });

  it('when a holder writes with a fence older than the newest lease, then its write is refused', async () => {
    const { client } = await connect();
    const prefix = newPrefix();
    const { logger } = captureLogs();
    const store = createRedisStore({ client, prefix, cipher });
    const lock = createRedisLock({ client, prefix, logger, ttlMs: 200 });
    const stale = await lock.tryAcquire('k');
    expect(stale).toBeDefined();
    expect(await lock.tryAcquire('k')).toBeUndefined();
    // The first lease ends (released here; a paused holder's would lapse) and a newer holder takes the lock.
    await stale?.release();
    const fresh = await lock.tryAcquire('k');
    expect(fresh?.fence).toBeGreaterThan(stale?.fence ?? Number.POSITIVE_INFINITY);
    expect(await store.setFenced?.('k', 'from the newer holder', 60_000, fresh?.fence ?? 0)).toBe(true);
    expect(await store.setFenced?.('k', 'from the stale holder', 60_000, stale?.fence ?? 0)).toBe(false);
    expect(await store.get('k')).toBe('from the newer holder');
    await fresh?.release();
  });
});

describe.skipIf(noRedis)('the fleet-wide renewal', () => {
  it('when two caches share a store and the holder outlives its lease TTL, then the upstream is asked once', async () => {
    const { client } = await connect();
    const prefix = newPrefix();
    const store = createRedisStore({ client, prefix, cipher });
    const { logger } = captureLogs();
    let requests = 0;
    const slowClient: TokenClient = {
      async clientCredentials(): Promise<UpstreamToken> {
        requests += 1;
        // Three lease lifetimes: only the holder's extensions keep the other cache out.
        await new Promise((resolve) => setTimeout(resolve, 900));
        const now = Date.now();
        return {
          accessToken: mintToken('fleet-slow'),
          tokenType: 'Bearer',
          expiresAt: now + 600_000,
          obtainedAt: now,
        };
      },
      refresh: () => Promise.reject(new Error('no refresh tokens here')),
      tokenEndpoint: async () => 'https://auth.example.test/token',
    };
    const config = upstreamConfigFor('https://auth.example.test/token');
    const caches = [0, 1].map(() =>
      createTokenCache({
        client: slowClient,
        config,
        clock: systemClock,
        logger,
        store,
        lock: createRedisLock({ client, prefix, logger, ttlMs: 300 }),
      }),
    );
    cleanups.push(() => {
      for (const cache of caches) cache.close();
    });
    const [first, second] = await Promise.all(caches.map((cache) => cache.get()));
    expect(requests).toBe(1);
    expect(second?.accessToken).toBe(first?.accessToken);
  });
});

describe.skipIf(noRedis)('fleet revocations', () => {
  async function replica(url = redisUrl, prefix = newPrefix()) {
    const connections = await connect(url);
    const { logger } = captureLogs();
    const list = createRedisRevocations({
      redis: connections,
      prefix,
      local: createRevocationList({ clock: systemClock }),
      clock: systemClock,
      logger,
      clockToleranceSeconds: 5,
    });
    cleanups.push(() => list.close());
    await list.ready;
    return list;
  }
  const exp = () => Math.floor(Date.now() / 1000) + 600;
  const eventually = async (check: () => boolean, withinMs: number) => {
    const deadline = Date.now() + withinMs;
    while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    return check();
  };

  it('when one replica revokes, then the other refuses within 1 s, and a replica started later learns it too', async () => {
    const prefix = newPrefix();
    const [one, two] = [await replica(redisUrl, prefix), await replica(redisUrl, prefix)];
    await one.revoke('jti-a', exp());
    expect(one.isRevoked('jti-a')).toBe(true);
    expect(await eventually(() => two.isRevoked('jti-a'), 1_000)).toBe(true);
    const late = await replica(redisUrl, prefix);
    expect(late.isRevoked('jti-a')).toBe(true);
    expect(late.isRevoked('jti-b')).toBe(false);
  });

  it('when a replica revokes while Redis is unreachable, then it refuses at once and the fleet learns it when Redis returns', async () => {
    const prefix = newPrefix();
    const forwarder = await startTcpForwarder({ host: '127.0.0.1', port: 6379 });
    cleanups.push(() => forwarder.close());
    const cutOff = await replica(`redis://127.0.0.1:${forwarder.port}`, prefix);
    const other = await replica(redisUrl, prefix);
    await forwarder.cut();
    await cutOff.revoke('jti-offline', exp());
    expect(cutOff.isRevoked('jti-offline')).toBe(true);
    expect(await eventually(() => other.isRevoked('jti-offline'), 300)).toBe(false);
    await forwarder.restore();
    expect(await eventually(() => other.isRevoked('jti-offline'), 3_000)).toBe(true);
  });
});
