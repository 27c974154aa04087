import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerProcess, startBrokerProcess } from '../support/brokerProcess.js';
import { registerSecret } from '../support/logs.js';
import { type FakeTokenServer, mintToken, reply, startFakeTokenServer } from '../support/oauthServers.js';
import { missing } from '../support/requires.js';
import { signingKeySet } from '../support/signingKeys.js';
import { startTcpForwarder, type TcpForwarder } from '../support/tcpForwarder.js';
import { sleep, waitFor } from '../support/waiting.js';

const noRedis = await missing('redis');

const redisUrl = 'redis://127.0.0.1:6379';
const origin = 'http://app.test';

/** The environment of one fleet: same upstream, same keys, same Redis prefix. */
async function fleetEnv(upstream: FakeTokenServer, overrides: Record<string, string> = {}) {
  const prefix = `tb-test-${randomBytes(6).toString('hex')}:`;
  const apiKey = registerSecret('fleet api key', `fleet-${randomBytes(24).toString('base64url')}`);
  const clientSecret = registerSecret(
    'fleet client secret',
    `secret-${randomBytes(24).toString('base64url')}`,
  );
  const env = {
    LOG_LEVEL: 'info',
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: prefix,
    CACHE_ENCRYPTION_KEY: registerSecret('cache key', randomBytes(32).toString('base64')),
    SIGNING_KEYS: await signingKeySet(),
    BROKER_API_KEYS: apiKey,
    ALLOWED_ORIGINS: origin,
    UPSTREAM_TOKEN_URL: upstream.tokenUrl,
    UPSTREAM_CLIENT_ID: 'fleet-client',
    UPSTREAM_CLIENT_SECRET: clientSecret,
    RATE_LIMIT_CLIENT_TOKEN: '20/minute',
    ...overrides,
  };
  return { env, prefix, apiKey, clientSecret };
}

async function deleteKeys(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

const dispatcher = new Agent({ connections: 64, pipelining: 1 });

async function getJson(
  url: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'POST' = 'GET',
  body?: string,
) {
  const answer = await request(url, { method, headers, body, dispatcher });
  const text = await answer.body.text();
  return {
    status: answer.statusCode,
    headers: answer.headers,
    json: () => JSON.parse(text) as Record<string, unknown>,
  };
}

describe.skipIf(noRedis)('a fleet of four broker processes sharing one Redis', () => {
  let upstream: FakeTokenServer;
  let brokers: BrokerProcess[] = [];
  let forwarder: TcpForwarder;
  let redis: Redis;
  let fleet: Awaited<ReturnType<typeof fleetEnv>>;
  const issued: string[] = [];
  const firstLifetimeSeconds = 6;
  const requestedAt: number[] = [];
  const tokenRequests = () => upstream.requests.filter((req) => req.url === '/oauth/token').length;

  beforeAll(async () => {
    // The first token lives 6 s, so it is renewed (and expires) during the suite; later ones live an hour.
    upstream = await startFakeTokenServer((_req, res) => {
      const accessToken = mintToken('fleet-access');
      issued.push(accessToken);
      requestedAt.push(Date.now());
      reply(res, 200, {
        access_token: accessToken,
        token_type: 'Bearer',
        expires_in: issued.length === 1 ? firstLifetimeSeconds : 3600,
      });
    });
    forwarder = await startTcpForwarder({ host: '127.0.0.1', port: 6379 });
    redis = new Redis(redisUrl);
    fleet = await fleetEnv(upstream);
    brokers = await Promise.all(
      [0, 1, 2, 3].map((index) =>
        startBrokerProcess(
          // The fourth replica reaches Redis through a forwarder the outage test cuts.
          index === 3 ? { ...fleet.env, REDIS_URL: `redis://127.0.0.1:${forwarder.port}` } : fleet.env,
        ),
      ),
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(brokers.map((broker) => broker.stop()));
    const keys = await deleteKeys(redis, fleet.prefix);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await forwarder.close();
    await upstream.close();
  });

  const upstreamToken = (broker: BrokerProcess) =>
    getJson(`${broker.url}/api/upstream-token`, { authorization: `Bearer ${fleet.apiKey}` });

  it('when 1,000 cold callers spread over four replicas, then the upstream sees exactly one token request', async () => {
    // Warm the connections (not the caches): the burst then measures the token path only.
    for (const broker of brokers) expect((await getJson(`${broker.url}/healthz`)).status).toBe(200);
    const answers = await Promise.all(
      Array.from({ length: 1000 }, (_, index) => upstreamToken(brokers[index % 4] as BrokerProcess)),
    );
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    // Background renewal starts half-way through the first token's life; on a loaded machine the burst
    // may outlast that, so count what the burst asked for: everything before the renewal was due.
    const renewalDue = (requestedAt[0] as number) + (firstLifetimeSeconds * 1000) / 2;
    expect(requestedAt.filter((at) => at < renewalDue)).toHaveLength(1);
    expect(answers[0]?.json().access_token).toBe(issued[0]);
    for (const answer of answers) expect(issued).toContain(answer.json().access_token);
  });

  it('when Redis is scanned, then it holds ciphertext only: no token, secret or key in clear', async () => {
    const keys = await deleteKeys(redis, fleet.prefix);
    expect(keys.length).toBeGreaterThan(0);
    const dump = [keys.join('\n')];
    for (const key of keys) {
      if ((await redis.type(key)) === 'string') dump.push((await redis.get(key)) ?? '');
    }
    const everything = dump.join('\n');
    for (const secret of [...issued, fleet.clientSecret, fleet.apiKey, fleet.env.CACHE_ENCRYPTION_KEY]) {
      expect(everything).not.toContain(secret);
    }
    const tokenKey = keys.find((key) => key.startsWith(`${fleet.prefix}upstream-token:`)) as string;
    expect(await redis.get(tokenKey)).toMatch(/^v1\.[\w-]+\.[\w-]{16}\.[\w-]+$/);
  });

  it('when the first token expires, then the fleet renewed it with exactly one more request and serves the new one', async () => {
    await sleep((requestedAt[0] as number) + firstLifetimeSeconds * 1000 + 200 - Date.now());
    expect(tokenRequests()).toBe(2);
    const answers = await Promise.all(
      Array.from({ length: 400 }, (_, index) => upstreamToken(brokers[index % 4] as BrokerProcess)),
    );
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    expect(new Set(answers.map((answer) => answer.json().access_token))).toEqual(new Set([issued[1]]));
    expect(tokenRequests()).toBe(2);
  });

  it('when a client token is revoked on replica 1, then replicas 2-4 refuse it within 1 s', async () => {
    const minted = await getJson(`${brokers[0]?.url}/api/client-token`, { origin }, 'POST');
    expect(minted.status).toBe(200);
    const token = registerSecret('fleet client token', minted.json().token as string);
    const introspect = (broker: BrokerProcess) =>
      getJson(
        `${broker.url}/api/client-token/introspect`,
        { authorization: `Bearer ${fleet.apiKey}`, 'content-type': 'application/x-www-form-urlencoded' },
        'POST',
        `token=${token}`,
      );
    for (const broker of brokers) expect((await introspect(broker)).json().active).toBe(true);

    const revoked = await getJson(
      `${brokers[0]?.url}/api/client-token/revoke`,
      { authorization: `Bearer ${fleet.apiKey}`, 'content-type': 'application/x-www-form-urlencoded' },
      'POST',
      `token=${token}`,
    );
    expect(revoked.status).toBe(200);
    const revokedAt = Date.now();
    const others = brokers.slice(1);
    const pending = new Set(others);
    while (pending.size > 0 && Date.now() - revokedAt < 1_000) {
      for (const broker of [...pending])
        if ((await introspect(broker)).json().active === false) pending.delete(broker);
    }
    expect(pending.size).toBe(0);
  });

  it('when requests are spread over the replicas, then the rate limit is hit at the configured total', async () => {
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        getJson(`${brokers[index % 3]?.url}/api/client-token`, { origin }, 'POST'),
      ),
    );
    // One request came from the revocation test on this IP already.
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(19);
    const limited = answers.filter((answer) => answer.status === 429);
    expect(limited).toHaveLength(21);
    const first = limited[0];
    expect(first?.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(first?.json().code).toBe('rate_limited');
    expect(Number(first?.headers['retry-after'])).toBeGreaterThan(0);
    expect(String(first?.headers.ratelimit)).toMatch(/^"client-token"; r=0; t=\d+$/);
    expect(String(first?.headers['ratelimit-policy'])).toMatch(/^"client-token"; q=20; w=60/);
  });

  it('when Redis becomes unreachable during traffic, then no request fails and the replica recovers when it returns', async () => {
    const replica = brokers[3] as BrokerProcess;
    const failures: number[] = [];
    let running = true;
    let rounds = 0;
    const traffic = (async () => {
      while (running) {
        const answers = await Promise.all(Array.from({ length: 20 }, () => upstreamToken(replica)));
        failures.push(...answers.filter((answer) => answer.status !== 200).map((answer) => answer.status));
        rounds += 1;
      }
    })();
    await waitFor(() => rounds >= 2);
    await forwarder.cut();
    await replica.waitForLine((line) => String(line.msg).startsWith('redis unreachable'), 5_000);
    expect((await getJson(`${replica.url}/readyz`)).json()).toMatchObject({
      status: 'ready',
      redis: 'degraded',
    });
    // Limited routes fail open while the counters are unreachable.
    expect(
      (await getJson(`${replica.url}/api/client-token`, { origin: 'http://other.test' }, 'POST')).status,
    ).toBe(403);
    // Traffic keeps flowing through half a second of outage, and a few rounds however slow the machine.
    const roundsBeforeOutage = rounds;
    await Promise.all([sleep(500), waitFor(() => rounds >= roundsBeforeOutage + 3, 10_000)]);
    await forwarder.restore();
    await replica.waitForLine((line) => String(line.msg).startsWith('redis is back'), 5_000);
    running = false;
    await traffic;
    expect(failures).toEqual([]);
    expect((await getJson(`${replica.url}/readyz`)).json()).toMatchObject({ status: 'ready', redis: 'ok' });
    const transitions = replica
      .lines()
      .filter((line) => /^redis (unreachable|is back)/.test(String(line.msg)));
    expect(transitions.map((line) => line.level)).toEqual(['warn', 'info']);
    expect(tokenRequests()).toBe(2);
  });
});
