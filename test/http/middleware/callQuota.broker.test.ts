import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../../src/clock.js';
import { loadConfig } from '../../../src/config/index.js';
import { quotaWindow } from '../../../src/upstream/quota.js';
import { type Answer, appOrigin, startBroker } from '../../support/broker.js';
import { registerSecret } from '../../support/logs.js';
import { missing } from '../../support/requires.js';
import { sharedRedisScratch, sharedRedisUrl } from '../../support/sharedRedis.js';
import { signingKeySet } from '../../support/signingKeys.js';

const noRedis = await missing('redis');

const prefix = sharedRedisScratch('quota').prefix();

function gauge(metrics: string, name: string): number | undefined {
  const line = metrics.split('\n').find((entry) => entry.startsWith(`${name}{upstream="default"} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('UPSTREAM_CALL_QUOTA on one broker', () => {
  it('when the hourly quota is spent, then calls get 429 call_quota_exhausted with Retry-After to the next hour, until the window resets', async () => {
    // Ten minutes before the end of an hour, in real time: tokens are verified against this clock.
    const end = quotaWindow('hour', Date.now()).end;
    const clock = createManualClock(end - 600_000);
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      clock,
      env: { UPSTREAM_CALL_QUOTA: '3/hour', CLIENT_TOKEN_TTL: '3600' },
    });
    const token = await broker.clientToken();
    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await broker.proxy(token)).status);
    expect(statuses).toEqual([200, 200, 200]);

    const refused = await broker.proxy(token);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('600');
    const problem = JSON.parse(refused.body) as { code: string; detail: string };
    expect(problem.code).toBe('call_quota_exhausted');
    expect(problem.detail).toContain(new Date(end).toISOString());
    expect(broker.api.requests).toHaveLength(3);

    const metrics = (await broker.request({ path: '/metrics', headers: {} })).body;
    expect(gauge(metrics, 'token_broker_upstream_call_quota_used')).toBe(3);
    expect(gauge(metrics, 'token_broker_upstream_call_quota_limit')).toBe(3);
    expect(metrics).toContain(
      'token_broker_proxy_call_refusals_total{upstream="default",code="call_quota_exhausted"} 1',
    );
    const lines = broker.logs.lines();
    // One line per refusal: the 429's access line, with the code and the reason.
    expect(lines.filter((line) => line.code === 'call_quota_exhausted')).toEqual([
      expect.objectContaining({
        msg: 'request',
        status: 429,
        origin: appOrigin,
        upstream: 'default',
        reason: expect.stringMatching(/3\/hour/),
      }),
    ]);
    expect(lines.filter((line) => line.msg?.toString().startsWith('upstream call quota spent'))).toHaveLength(
      1,
    );

    clock.set(end);
    expect((await broker.proxy(token)).status).toBe(200);
    expect(
      gauge(
        (await broker.request({ path: '/metrics', headers: {} })).body,
        'token_broker_upstream_call_quota_used',
      ),
    ).toBe(1);
  });

  it('when UPSTREAMS names two upstreams, then UPSTREAM_<NAME>_CALL_QUOTA applies to its own upstream only', () => {
    const config = loadConfig({
      NODE_ENV: 'test',
      UPSTREAMS: 'a,b',
      ...Object.fromEntries(
        ['A', 'B'].flatMap((name) => [
          [`UPSTREAM_${name}_TOKEN_URL`, 'https://auth.example.com/token'],
          [`UPSTREAM_${name}_CLIENT_ID`, 'id'],
          [`UPSTREAM_${name}_CLIENT_SECRET`, 'secret'],
        ]),
      ),
      UPSTREAM_A_CALL_QUOTA: '100000/day',
    });
    expect(config.upstreams.map((upstream) => upstream.config.callQuota)).toEqual([
      { limit: 100_000, period: 'day' },
      undefined,
    ]);
    expect(() => loadConfig({ NODE_ENV: 'test', UPSTREAM_CALL_QUOTA: '10/week' })).toThrow(
      /UPSTREAM_CALL_QUOTA: must be <count>\/<minute\|hour\|day\|month>/,
    );
  });
});

describe.skipIf(noRedis)('UPSTREAM_CALL_QUOTA on two brokers sharing Redis', () => {
  it('when two tokens call two brokers in turns, then together they serve exactly the quota and every refusal says when it resets', async () => {
    const env = {
      REDIS_URL: sharedRedisUrl,
      REDIS_KEY_PREFIX: prefix,
      CACHE_ENCRYPTION_KEY: registerSecret('quota cache key', randomBytes(32).toString('base64')),
      SIGNING_KEYS: await signingKeySet(),
      UPSTREAM_CALL_QUOTA: '12/day',
      CALL_LEASE_SIZE: '5',
    };
    const first = await startBroker({ upstream: 'fake', api: 'fixed', env });
    const second = await startBroker({ upstream: 'fake', api: 'fixed', env });
    const tokens = [await first.clientToken(), await second.clientToken()];
    const answers: Answer[] = [];
    for (let i = 0; i < 18; i += 1)
      answers.push(await (i % 2 === 0 ? first : second).proxy(tokens[i % 3 === 0 ? 0 : 1] as string));
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(12);
    expect(first.api.requests.length + second.api.requests.length).toBe(12);
    const refused = answers.filter((answer) => answer.status === 429);
    const untilMidnight = Math.ceil((quotaWindow('day', Date.now()).end - Date.now()) / 1000);
    for (const answer of refused) {
      expect(JSON.parse(answer.body).code).toBe('call_quota_exhausted');
      expect(Math.abs(Number(answer.headers['retry-after']) - untilMidnight)).toBeLessThanOrEqual(5);
    }
  });
});
