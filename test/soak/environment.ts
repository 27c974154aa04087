import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { createFleet, type Fleet, logAfter } from '../chaos/chaosFleet.js';
import { type ApiServer, startVerifyingApi } from '../support/apiServers.js';
import type { BrokerProcess } from '../support/brokerProcess.js';
import { registerSecret } from '../support/logs.js';
import { decodeBasic, type FakeTokenServer, reply, startFakeTokenServer } from '../support/oauthServers.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { type RedisServer, startRedisServer } from '../support/redisServers.js';
import { createSecretVolume, type SecretVolume } from '../support/secretVolume.js';
import { privateJwk } from '../support/signingKeys.js';
import { sleep, waitFor } from '../support/waiting.js';

/**
 * The chaos environment: two broker processes sharing a private `redis-server` (password-protected, on
 * a port of its own), a real oidc-provider behind a token endpoint that can be made to fail and that
 * accepts the client secrets an authorization server would during a rotation, and a real API that
 * verifies the provider's tokens and can be made slow or failing. Every secret the brokers read is a
 * file of one Kubernetes-style secret volume, so each can be rotated as the kubelet would.
 */

/** What browsers reach the fleet at: both replicas check DPoP `htu` against it. */
export const publicUrl = 'http://broker.soak.test';
/** The API's path, as the proxy exposes it. */
export const apiPath = '/api/proxy/hello';
/** A failing API marks its own answers, so a relayed API error is told from one of the broker's. */
export const apiFaultMarker = 'soak-api-fault';

export type ReplicaName = 'a' | 'b';
export type TokenEndpointMode = 'ok' | 'fail';
export type ApiMode = 'ok' | 'slow' | 'timeout' | 'fail';

/** The current content of each secret file of the volume. */
export interface Secrets {
  'signing-keys': string;
  'api-keys': string;
  'client-secret': string;
  'cache-key': string;
  'redis-password': string;
}

export interface ChaosEnvironment {
  redis: RedisServer;
  auth: TestAuthServer;
  tokenEndpoint: FakeTokenServer;
  api: ApiServer;
  fleet: Fleet;
  volume: SecretVolume;
  /** A scratch folder (the operator's working copy of the signing keys). */
  workDir: string;
  secrets: Secrets;
  /** The API key clients send now; rotation switches it. */
  apiKey: string;
  /** Requests in flight by the API key they carry: a key is removed only once none carries it. */
  apiKeyInFlight: Map<string, number>;
  replicas: Record<ReplicaName, BrokerProcess>;
  /** Replicas a load balancer sends traffic to (a restarting one is taken out first). */
  inService: Set<ReplicaName>;
  /** Requests sent to each replica and not yet answered. */
  inFlight: Record<ReplicaName, number>;
  /** Client secrets the token endpoint accepts (two while one rotates). */
  acceptedSecrets: Set<string>;
  /** How many token requests authenticated with each secret, by its SHA-256. */
  secretsSeen: Map<string, number>;
  tokenEndpointMode: TokenEndpointMode;
  apiMode: ApiMode;
  /** Writes `next` into the volume (the kubelet's swap) and waits until every replica applied it. */
  rotateFiles(next: Partial<Secrets>): Promise<void>;
  /** A short-lived admin connection to Redis with the current password. */
  withRedis<T>(use: (redis: Redis) => Promise<T>): Promise<T>;
  /** Takes a replica out of service, stops it (SIGTERM: it drains), starts a new one, puts it in service. */
  restart(name: ReplicaName): Promise<void>;
  stop(): Promise<void>;
}

export interface ChaosSettings {
  /** `expires_in` of the provider's tokens, seconds. */
  upstreamTokenTtl: number;
  /** `CLIENT_TOKEN_TTL`: a revoked token must live until its last check (about 40 s after the revocation). */
  clientTokenTtl: number;
  /** `UPSTREAM_TIMEOUT_MS`. */
  upstreamTimeoutMs: number;
}

const startTimeoutMs = 120_000;

export const fingerprint = (secret: string) => createHash('sha256').update(secret).digest('hex');

const randomSecret = (label: string, prefix: string, bytes = 24) =>
  registerSecret(label, `${prefix}-${randomBytes(bytes).toString('base64url')}`);

export const newSecrets = {
  apiKey: () => randomSecret('soak api key', 'soak-key'),
  clientSecret: () => randomSecret('soak client secret', 'soak-cs'),
  cacheKey: () => registerSecret('soak cache key', randomBytes(32).toString('base64')),
  redisPassword: () => randomSecret('soak redis password', 'soak-rp', 18),
};

export async function startChaosEnvironment(settings: ChaosSettings): Promise<ChaosEnvironment> {
  const [redis, auth] = await Promise.all([
    startRedisServer(),
    startTestAuthServer({ accessTokenTtl: settings.upstreamTokenTtl }),
  ]);
  const firstKey = { ...(await privateJwk('EdDSA', `soak-${randomBytes(4).toString('hex')}`)), alg: 'EdDSA' };
  const secrets: Secrets = {
    'signing-keys': registerSecret('soak signing keys', JSON.stringify({ keys: [firstKey] })),
    'api-keys': newSecrets.apiKey(),
    'client-secret': newSecrets.clientSecret(),
    'cache-key': newSecrets.cacheKey(),
    'redis-password': newSecrets.redisPassword(),
  };
  const admin = new Redis(redis.url, { lazyConnect: true });
  await admin.connect();
  await admin.config('SET', 'requirepass', secrets['redis-password']);
  admin.disconnect();

  const volume = createSecretVolume({ ...secrets });
  const workDir = mkdtempSync(join(tmpdir(), 'tb-soak-'));
  writeFileSync(join(workDir, 'signing-keys.json'), secrets['signing-keys']);

  const env = {} as ChaosEnvironment;
  // The authorization server holds two secrets while one rotates; the provider behind it knows one.
  const tokenEndpoint = await startFakeTokenServer(async (req, res) => {
    if (env.tokenEndpointMode === 'fail') return reply(res, 503, { error: 'temporarily_unavailable' });
    const basic = decodeBasic(req.headers.authorization);
    if (basic?.clientId !== auth.clientId || !env.acceptedSecrets.has(basic.clientSecret)) {
      return reply(res, 401, { error: 'invalid_client' });
    }
    const seen = fingerprint(basic.clientSecret);
    env.secretsSeen.set(seen, (env.secretsSeen.get(seen) ?? 0) + 1);
    const answer = await request(auth.tokenUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${auth.clientId}:${auth.clientSecret}`).toString('base64')}`,
      },
      body: req.body,
    });
    const body = await answer.body.text();
    const accessToken = (JSON.parse(body) as { access_token?: string }).access_token;
    if (accessToken) registerSecret('soak upstream token', accessToken);
    reply(res, answer.statusCode, body);
  });
  const api = await startVerifyingApi(auth, async (_req, res) => {
    const mode = env.apiMode;
    if (mode === 'ok') return false;
    if (mode === 'fail') {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: apiFaultMarker }));
      return true;
    }
    // `slow` answers within the broker's timeout, `timeout` well past it.
    await sleep(mode === 'slow' ? settings.upstreamTimeoutMs / 4 : settings.upstreamTimeoutMs + 1_000);
    if (mode === 'slow') return false;
    if (!res.destroyed) {
      res.writeHead(504, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: apiFaultMarker }));
    }
    return true;
  });

  const fleet = await createFleet(tokenEndpoint.tokenUrl, {
    LOG_LEVEL: 'info',
    REDIS_URL: redis.url,
    REDIS_PASSWORD_FILE: volume.path('redis-password'),
    SIGNING_KEYS: '',
    SIGNING_KEYS_FILE: volume.path('signing-keys'),
    BROKER_API_KEYS: '',
    BROKER_API_KEYS_FILE: volume.path('api-keys'),
    UPSTREAM_CLIENT_ID: auth.clientId,
    UPSTREAM_CLIENT_SECRET: '',
    UPSTREAM_CLIENT_SECRET_FILE: volume.path('client-secret'),
    CACHE_ENCRYPTION_KEY: '',
    CACHE_ENCRYPTION_KEY_FILE: volume.path('cache-key'),
    UPSTREAM_RESOURCE: auth.resource,
    UPSTREAM_SCOPE: auth.scope,
    UPSTREAM_API_URL: api.origin,
    UPSTREAM_TIMEOUT_MS: String(settings.upstreamTimeoutMs),
    PUBLIC_URL: publicUrl,
    CLIENT_TOKEN_TTL: String(settings.clientTokenTtl),
    RATE_LIMIT_PROXY: '100000/minute',
    RATE_LIMIT_CLAIM: '100000/minute',
  });
  // A loaded machine (the soak and the chaos suite share it) can take longer than the suites' 45 s to
  // start a process; a replica that does not start leaves nothing of the environment running.
  const started = await Promise.allSettled([
    fleet.start({}, startTimeoutMs),
    fleet.start({}, startTimeoutMs),
  ]);
  const [a, b] = started.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value : undefined));
  if (!a || !b) {
    await fleet.stop();
    await Promise.all([redis.stop(), auth.close(), tokenEndpoint.close(), api.close()]);
    volume.remove();
    rmSync(workDir, { recursive: true, force: true });
    throw (started.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult).reason;
  }

  Object.assign(env, {
    redis,
    auth,
    tokenEndpoint,
    api,
    fleet,
    volume,
    workDir,
    secrets,
    apiKey: secrets['api-keys'],
    apiKeyInFlight: new Map(),
    replicas: { a, b },
    inService: new Set<ReplicaName>(['a', 'b']),
    inFlight: { a: 0, b: 0 },
    acceptedSecrets: new Set([secrets['client-secret']]),
    secretsSeen: new Map(),
    tokenEndpointMode: 'ok',
    apiMode: 'ok',
  } satisfies Partial<ChaosEnvironment>);

  // Keep the soak's own memory flat: the servers record every request.
  const forget = setInterval(() => {
    tokenEndpoint.requests.length = 0;
    api.requests.length = 0;
  }, 10_000);
  forget.unref();

  env.rotateFiles = async (next) => {
    const since = Date.now();
    Object.assign(env.secrets, next);
    volume.swap({ ...env.secrets });
    await Promise.all(
      [...env.inService].map((name) =>
        logAfter(env.replicas[name], 'configuration generation', since, 20_000),
      ),
    );
  };
  env.withRedis = async (use) => {
    const connection = new Redis(redis.url, {
      password: env.secrets['redis-password'],
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    connection.on('error', () => undefined);
    await connection.connect().catch((error: Error) => {
      throw new Error(`the admin connection to the soak's Redis failed: ${error.message}`);
    });
    try {
      return await use(connection);
    } finally {
      connection.disconnect();
    }
  };
  env.restart = async (name) => {
    env.inService.delete(name);
    // What a preStop pause gives a pod: the requests the balancer sent before taking it out arrive first
    // (a connection attempted after SIGTERM closed the listener would be refused, by the kernel).
    await waitFor(() => env.inFlight[name] === 0, 10_000).catch(() => undefined);
    await env.replicas[name].stop();
    // On a port of its own, as a new pod gets an address of its own: the old port may have been taken
    // meanwhile by one of the machine's outgoing connections.
    env.replicas[name] = await fleet.start({}, startTimeoutMs);
    env.inService.add(name);
  };
  env.stop = async () => {
    clearInterval(forget);
    await fleet.stop();
    await Promise.all([redis.stop(), auth.close(), tokenEndpoint.close(), api.close()]);
    volume.remove();
    rmSync(workDir, { recursive: true, force: true });
  };
  return env;
}
