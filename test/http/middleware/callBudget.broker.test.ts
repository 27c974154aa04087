import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { type BrokerClientEvent, createBrokerClient } from '../../../src/browser/client.js';
import { appOrigin, startBroker } from '../../support/broker.js';
import { registerSecret } from '../../support/logs.js';
import { startRedisServer } from '../../support/redisServers.js';
import { missing } from '../../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../../support/sharedRedis.js';
import { signingKeySet } from '../../support/signingKeys.js';

const noRedis = await missing('redis', 'redis-server');

const prefix = sharedRedisScratch('budget').prefix();

/** The settings two replicas share: one Redis (this file's prefix), one key set, one cache key. */
async function fleetEnv(redisUrl = sharedRedisUrl): Promise<Record<string, string>> {
  return {
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: prefix,
    CACHE_ENCRYPTION_KEY: registerSecret('budget cache key', randomBytes(32).toString('base64')),
    SIGNING_KEYS: await signingKeySet(),
  };
}

function refusalCount(metrics: string, code: string): number {
  const line = metrics
    .split('\n')
    .find((entry) =>
      entry.startsWith(`token_broker_proxy_call_refusals_total{upstream="default",code="${code}"} `),
    );
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

describe('CLIENT_TOKEN_MAX_CALLS on one broker', () => {
  it('when a token has made its 3 calls, then the 4th gets 429 token_budget_exhausted without reaching the API, and a new token calls again', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      env: { CLIENT_TOKEN_MAX_CALLS: '3' },
    });
    const token = await broker.clientToken();
    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await broker.proxy(token)).status);
    expect(statuses).toEqual([200, 200, 200]);

    const refused = await broker.proxy(token);
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    const problem = JSON.parse(refused.body) as { code: string; detail: string };
    expect(problem.code).toBe('token_budget_exhausted');
    expect(problem.detail).toMatch(/made its 3 calls; get a new client token/);
    expect(broker.api.requests).toHaveLength(3);

    expect((await broker.proxy(await broker.clientToken())).status).toBe(200);
    expect(broker.api.requests).toHaveLength(4);

    const metrics = await broker.request({ path: '/metrics', headers: {} });
    expect(refusalCount(metrics.body, 'token_budget_exhausted')).toBe(1);
    // One line per refusal: the 429's access line, with the code and the reason.
    const lines = broker.logs.lines().filter((line) => line.code === 'token_budget_exhausted');
    expect(lines).toEqual([
      expect.objectContaining({
        msg: 'request',
        status: 429,
        origin: appOrigin,
        upstream: 'default',
        reason: 'the token made its 3 calls',
      }),
    ]);
    expect(JSON.stringify(lines)).not.toContain(token);
  });

  it('when a refused call carries a body, then the answer comes before the body is read', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      env: { CLIENT_TOKEN_MAX_CALLS: '1' },
    });
    const token = await broker.clientToken();
    expect((await broker.proxy(token)).status).toBe(200);
    // A body that never ends: only an answer written before reading it lets the request finish.
    const endless = new Readable({ read() {} });
    endless.push('x'.repeat(1024));
    const refused = await broker.request({
      path: '/api/proxy/things',
      headers: { origin: appOrigin, authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      body: endless as unknown as Buffer,
    });
    endless.destroy();
    expect(refused.status).toBe(429);
    expect(broker.api.requests).toHaveLength(1);
  });
});

describe('CLIENT_TOKEN_MAX_CALLS with the browser helper', () => {
  it('when the helper makes 7 calls with a budget of 3 per token, then every call succeeds on 3 tokens, each renewal after a token_budget_exhausted', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      env: { CLIENT_TOKEN_MAX_CALLS: '3' },
    });
    const events: BrokerClientEvent[] = [];
    const client = createBrokerClient({
      baseUrl: broker.url,
      autoRefresh: false,
      onEvent: (event) => events.push(event),
      // Node's fetch sends no Origin: added as a page on appOrigin would send it.
      fetch: async (url, init) => {
        const headers = new Headers(init.headers);
        headers.set('origin', appOrigin);
        const response = await fetch(url, { ...init, headers });
        if (url.endsWith('/api/client-token') && response.ok) {
          registerSecret('helper budget token', ((await response.clone().json()) as { token: string }).token);
        }
        return response;
      },
    });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i += 1) statuses.push((await client.fetch(`/things/${i}`)).status);
    expect(statuses).toEqual(Array(7).fill(200));
    expect(broker.api.requests).toHaveLength(7);
    expect(
      events.filter((event) => event.type === 'retry').map((event) => 'code' in event && event.code),
    ).toEqual(['token_budget_exhausted', 'token_budget_exhausted']);
    expect(broker.answers.filter((answer) => answer.url === '/api/client-token')).toHaveLength(3);
  });
});

describe.skipIf(noRedis)('CLIENT_TOKEN_MAX_CALLS on two brokers sharing Redis', () => {
  it('when one token calls both brokers in turns, then together they serve exactly 10 calls and both refuse the rest', async () => {
    const env = { ...(await fleetEnv()), CLIENT_TOKEN_MAX_CALLS: '10', CALL_LEASE_SIZE: '4' };
    const first = await startBroker({ upstream: 'fake', api: 'fixed', env });
    const second = await startBroker({ upstream: 'fake', api: 'fixed', env });
    const token = await first.clientToken();
    const statuses: number[] = [];
    for (let i = 0; i < 16; i += 1) statuses.push((await (i % 2 === 0 ? first : second).proxy(token)).status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(10);
    expect(statuses.slice(-4)).toEqual([429, 429, 429, 429]);
    expect(first.api.requests.length + second.api.requests.length).toBe(10);
    const codes = [...first.answers, ...second.answers].filter((answer) => answer.status === 429);
    expect(codes.map((answer) => answer.code)).toEqual(Array(6).fill('token_budget_exhausted'));
  });

  it('when Redis goes down, then each broker still enforces the budget on its own (fails open to a local count)', async () => {
    const server = await startRedisServer();
    try {
      const env = { ...(await fleetEnv(server.url)), CLIENT_TOKEN_MAX_CALLS: '5', CALL_LEASE_SIZE: '2' };
      const broker = await startBroker({ upstream: 'fake', api: 'fixed', env });
      const token = await broker.clientToken();
      expect((await broker.proxy(token)).status).toBe(200);
      await server.kill();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i += 1) statuses.push((await broker.proxy(token)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
      expect(broker.logs.lines().map((line) => line.msg)).toContain(
        'call counter unreachable: budgets and quotas are counted by this replica alone meanwhile',
      );
    } finally {
      await server.stop();
    }
  });
});
