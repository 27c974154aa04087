import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { Redis } from 'ioredis';
import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer } from '../support/apiServers.js';
import { appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { decodeBasic } from '../support/oauthServers.js';
import { type RedisServer, startRedisServer } from '../support/redisServers.js';
import { createSecretVolume, type SecretVolume } from '../support/secretVolume.js';
import { privateJwk } from '../support/signingKeys.js';
import { sleep, waitFor } from '../support/waiting.js';

/** One generation of every secret the broker reads from files. */
async function secretFiles(signing: object[]) {
  return {
    'client-secret': registerSecret('rotated client secret', `cs-${randomBytes(24).toString('base64url')}`),
    'api-keys': registerSecret('rotated api key', `key-${randomBytes(24).toString('base64url')}`),
    'signing-keys': JSON.stringify({ keys: signing }),
    'cache-key': registerSecret('rotated cache key', randomBytes(32).toString('base64')),
    'redis-password': registerSecret('rotated redis password', `rp-${randomBytes(18).toString('base64url')}`),
  };
}

const signingJwk = async (kid: string) => ({ ...(await privateJwk('EdDSA', kid)), alg: 'EdDSA', use: 'sig' });

describe('secrets reloaded from files without a restart', () => {
  let redis: RedisServer;
  let admin: Redis;
  let volume: SecretVolume;
  let first: Awaited<ReturnType<typeof secretFiles>>;
  let firstKey: object;
  let broker: FakeUpstreamBroker;

  beforeAll(async () => {
    redis = await startRedisServer();
    firstKey = await signingJwk('first');
    first = await secretFiles([firstKey]);
    admin = new Redis(redis.url, { lazyConnect: true });
    await admin.connect();
    await admin.config('SET', 'requirepass', first['redis-password']);
    await admin.auth(first['redis-password']);
    volume = createSecretVolume(first);
    broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      logLevel: 'info',
      reload: { debounceMs: 50 },
      env: {
        // The harness's 400 ms suits fault tests; 32 connections on a loaded machine need room.
        UPSTREAM_TIMEOUT_MS: '5000',
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_CLIENT_SECRET_FILE: volume.path('client-secret'),
        BROKER_API_KEYS: '',
        BROKER_API_KEYS_FILE: volume.path('api-keys'),
        SIGNING_KEYS_FILE: volume.path('signing-keys'),
        REDIS_URL: redis.url,
        REDIS_KEY_PREFIX: `tb-reload-${randomBytes(4).toString('hex')}:`,
        REDIS_PASSWORD_FILE: volume.path('redis-password'),
        CACHE_ENCRYPTION_KEY_FILE: volume.path('cache-key'),
      },
    });
  });

  afterAll(async () => {
    await broker?.close();
    admin?.disconnect();
    await redis?.stop();
    volume?.remove();
  });

  const claim = (apiKey: string) =>
    broker.request({
      method: 'POST',
      path: '/api/auth/claim',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ origin: appOrigin }),
    });
  const secretsSeen = () =>
    broker.upstream.requests.map((request) => decodeBasic(request.headers.authorization)?.clientSecret);
  const readiness = async () =>
    JSON.parse((await broker.request({ path: '/readyz' })).body) as {
      redis?: string;
      config: { generation: number; lastReload?: { outcome: string; settings?: string[] } };
    };

  it('when every secret file is swapped as the kubelet does while 32 connections mint and proxy, then no request fails and each part uses the new secret', async () => {
    expect(secretsSeen()).toEqual([]);
    expect((await claim(first['api-keys'])).status).toBe(200);
    const failures: string[] = [];
    let served = 0;
    let running = true;
    const worker = async () => {
      while (running) {
        const minted = await broker.request({ path: '/api/client-token', headers: { origin: appOrigin } });
        if (minted.status !== 200) {
          failures.push(`mint ${minted.status} ${minted.body}`);
          continue;
        }
        const { token } = JSON.parse(minted.body) as { token: string };
        registerSecret('client token', token);
        const proxied = await broker.request({
          path: '/api/proxy/things',
          headers: { authorization: `Bearer ${token}`, origin: appOrigin },
        });
        if (proxied.status === 200) served += 1;
        else failures.push(`proxy ${proxied.status} ${proxied.body}`);
      }
    };
    const workers = Array.from({ length: 32 }, worker);
    await waitFor(() => served >= 64, 20_000);

    const next = await secretFiles([await signingJwk('second'), firstKey]);
    // Redis takes the new password first; the connections already open stay authenticated.
    await admin.config('SET', 'requirepass', next['redis-password']);
    volume.swap(next);
    await waitFor(() => broker.broker.reloader?.status().generation === 2, 5_000);
    // The connections drop: the broker must come back with the new password.
    await admin.auth(next['redis-password']);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await sleep(300);
    // The held token keeps serving; after the API refuses it, the next request uses the new secret.
    await broker.broker.upstreams.get('default')?.cache?.invalidate(broker.issued.at(-1) ?? '');
    // Every connection keeps going on the new generation a while before the load stops.
    const mark = served;
    await waitFor(() => served >= mark + 64, 20_000);
    running = false;
    await Promise.all(workers);

    expect(failures, failures.join('\n')).toEqual([]);
    expect(secretsSeen()[0]).toBe(first['client-secret']);
    expect(secretsSeen().at(-1)).toBe(next['client-secret']);
    expect((await claim(first['api-keys'])).status).toBe(401);
    expect((await claim(next['api-keys'])).status).toBe(200);
    const minted = JSON.parse((await claim(next['api-keys'])).body) as { token: string };
    expect(decodeProtectedHeader(registerSecret('client token', minted.token)).kid).toBe('second');
    const jwks = JSON.parse((await broker.request({ path: '/.well-known/jwks.json' })).body) as {
      keys: { kid: string }[];
    };
    expect(jwks.keys.map((key) => key.kid)).toEqual(['second', 'first']);
    await waitFor(() => broker.broker.upstreams.get('default')?.cache?.status().hasToken === true);
    expect(await readiness()).toMatchObject({
      redis: 'ok',
      config: { generation: 2, lastReload: { outcome: 'applied' } },
    });
    const metrics = (await broker.request({ path: '/metrics' })).body;
    expect(metrics).toContain('token_broker_config_generation 2');
    expect(metrics).toContain('token_broker_config_reloads_total{outcome="applied"} 1');
    expect(
      broker.logs.lines().filter((line) => line.msg === 'configuration generation 2 applied'),
    ).toHaveLength(1);
  });

  it('when a reloaded file is malformed or removed, then the reload is refused on one line naming the setting and the running generation keeps serving', async () => {
    const serving = await broker.broker.reloader?.reload('SIGHUP');
    expect(serving?.outcome).toBe('unchanged');
    const next = await secretFiles([await signingJwk('third')]);
    const badKey = registerSecret('malformed cache key', `not-a-key-${randomBytes(8).toString('hex')}`);
    volume.swap({ ...next, 'signing-keys': '{"keys": [', 'cache-key': badKey });
    const refused = await broker.broker.reloader?.reload('SIGHUP');
    expect(refused).toMatchObject({ outcome: 'refused', settings: ['SIGNING_KEYS', 'CACHE_ENCRYPTION_KEY'] });
    const lines = broker.logs
      .lines()
      .filter((line) => String(line.msg).startsWith('configuration reload refused'));
    expect(lines.at(-1)?.msg).toBe(
      'configuration reload refused: SIGNING_KEYS, CACHE_ENCRYPTION_KEY; generation 2 keeps serving',
    );
    expect(JSON.stringify(lines)).not.toContain(badKey);
    // Nothing of the refused generation applies: not even its valid API key.
    expect((await claim(next['api-keys'])).status).toBe(401);
    expect(await readiness()).toMatchObject({
      config: {
        generation: 2,
        lastReload: { outcome: 'refused', settings: ['SIGNING_KEYS', 'CACHE_ENCRYPTION_KEY'] },
      },
    });

    unlinkSync(volume.path('client-secret'));
    expect(await broker.broker.reloader?.reload('SIGHUP')).toMatchObject({
      outcome: 'refused',
      settings: expect.arrayContaining(['UPSTREAM_CLIENT_SECRET_FILE']),
    });
    const minted = await broker.request({ path: '/api/client-token', headers: { origin: appOrigin } });
    expect(minted.status).toBe(200);
    const proxied = await broker.request({
      path: '/api/proxy/things',
      headers: {
        authorization: `Bearer ${registerSecret('client token', (JSON.parse(minted.body) as { token: string }).token)}`,
        origin: appOrigin,
      },
    });
    expect(proxied.status).toBe(200);
    expect((await readiness()).config.generation).toBe(2);
  });
});

describe('the generation counter', () => {
  it('when the files are re-read but nothing changed, then the generation stays and the outcome is unchanged', async () => {
    const volume = createSecretVolume({
      'api-keys': registerSecret('api key', `key-${randomBytes(16).toString('hex')}`),
    });
    const broker = await startBroker({
      upstream: 'fake',
      reload: { watchFiles: false },
      env: { BROKER_API_KEYS: '', BROKER_API_KEYS_FILE: volume.path('api-keys') },
    });
    expect(await broker.broker.reloader?.reload('SIGHUP')).toMatchObject({
      outcome: 'unchanged',
      trigger: 'SIGHUP',
    });
    expect(broker.broker.reloader?.status().generation).toBe(1);
    volume.remove();
  });
});

describe('a private_key_jwt client key reloaded from its file', () => {
  it('when UPSTREAM_CLIENT_KEY_FILE is swapped, then the held token keeps serving and the next token request is signed by the new key', async () => {
    const clientKey = async (kid: string) => {
      const jwk = await privateJwk('ES256', kid);
      return JSON.stringify({ keys: [{ ...jwk, alg: 'ES256' }] });
    };
    const volume = createSecretVolume({ 'client-key': await clientKey('key-1') });
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      reload: { debounceMs: 50 },
      env: {
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_AUTH_METHOD: 'private_key_jwt',
        UPSTREAM_CLIENT_KEY_FILE: volume.path('client-key'),
      },
    });
    const proxied = async () => {
      const token = await broker.clientToken(appOrigin);
      return (
        await broker.request({
          path: '/api/proxy/things',
          headers: { authorization: `Bearer ${token}`, origin: appOrigin },
        })
      ).status;
    };
    const signedBy = () =>
      broker.upstream.requests.map(
        (request) =>
          decodeProtectedHeader(new URLSearchParams(request.body).get('client_assertion') ?? '').kid,
      );
    expect(await proxied()).toBe(200);
    volume.swap({ 'client-key': await clientKey('key-2') });
    await waitFor(() => broker.broker.reloader?.status().generation === 2);
    expect(await proxied()).toBe(200);
    expect(signedBy()).toEqual(['key-1']);
    await broker.broker.upstreams.get('default')?.cache?.invalidate(broker.issued.at(-1) ?? '');
    expect(await proxied()).toBe(200);
    expect(signedBy()).toEqual(['key-1', 'key-2']);
    volume.remove();
  });
});

describe('a static API key reloaded from its file', () => {
  it('when UPSTREAM_API_KEY_FILE is swapped, then the next proxied call carries the new key and the old one never again', async () => {
    const keys = [
      registerSecret('static key 1', `static-${randomBytes(12).toString('hex')}`),
      registerSecret('static key 2', `static-${randomBytes(12).toString('hex')}`),
    ];
    const seen: (string | undefined)[] = [];
    const api = await startApiServer((req, res) => {
      seen.push(req.headers['x-api-key'] as string | undefined);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    const volume = createSecretVolume({ 'api-key': keys[0] as string });
    const broker = await startBroker({
      upstream: 'fake',
      api,
      reload: { debounceMs: 50 },
      env: {
        UPSTREAM_TOKEN_URL: '',
        UPSTREAM_CLIENT_ID: '',
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_API_KEY_FILE: volume.path('api-key'),
        UPSTREAM_CREDENTIAL_IN: 'header:X-Api-Key',
      },
    });
    const proxied = async () => {
      const token = await broker.clientToken(appOrigin);
      const answer = await broker.request({
        path: '/api/proxy/things',
        headers: { authorization: `Bearer ${token}`, origin: appOrigin },
      });
      return answer.status;
    };
    expect(await proxied()).toBe(200);
    volume.swap({ 'api-key': keys[1] as string });
    await waitFor(() => broker.broker.reloader?.status().generation === 2);
    expect(await proxied()).toBe(200);
    expect(seen).toEqual(keys);
    await api.close();
    volume.remove();
  });
});
