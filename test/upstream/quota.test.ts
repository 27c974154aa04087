import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import {
  createMemoryQuotaCounter,
  createQuotaGovernor,
  createRedisQuotaCounter,
  parseTokenQuota,
  type QuotaCounter,
  type QuotaGovernor,
  quotaWindow,
  type TokenQuota,
} from '../../src/upstream/quota.js';
import { createTokenCache } from '../../src/upstream/tokenCache.js';
import type { TokenClient, UpstreamToken } from '../../src/upstream/types.js';
import { refusal } from '../support/expectErrors.js';
import { createFakeTimers } from '../support/fakeTimers.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { upstreamConfigFor } from '../support/oauthServers.js';
import { missing } from '../support/requires.js';
import { sharedRedisScratch } from '../support/sharedRedis.js';

const noRedis = await missing('redis');

const hour = 3_600_000;
/** 10:20 UTC: 40 minutes before the hourly window resets. */
const start = Date.UTC(2026, 4, 12, 10, 20);

const config = upstreamConfigFor(undefined);

function governor(
  clock: ManualClock,
  quota: TokenQuota,
  counter: QuotaCounter = createMemoryQuotaCounter({ clock }),
) {
  const logs = captureLogs();
  const governed = createQuotaGovernor({ quota, counter, clock, logger: logs.logger });
  const at = (level: string) => logs.lines().filter((line) => line.level === level);
  return { governor: governed, counter, logs, at };
}

/** A token client that counts its calls and mints registered fake tokens living `lifetimeMs`. */
function fakeClient(clock: ManualClock, lifetimeMs = hour) {
  const calls = { count: 0 };
  const client: TokenClient = {
    async clientCredentials(): Promise<UpstreamToken> {
      calls.count += 1;
      const now = clock.now();
      const accessToken = registerSecret('quota access token', `quota-access-${randomUUID()}`);
      return { accessToken, tokenType: 'Bearer', obtainedAt: now, expiresAt: now + lifetimeMs };
    },
    refresh: () => Promise.reject(new Error('no refresh in these tests')),
    tokenEndpoint: async () => 'https://as.example.test/oauth/token',
  };
  return { client, calls };
}

function replica(clock: ManualClock, quota: QuotaGovernor, lifetimeMs = hour) {
  const logs = captureLogs();
  const fake = fakeClient(clock, lifetimeMs);
  const timers = createFakeTimers(clock);
  const cache = createTokenCache({
    client: fake.client,
    config,
    clock,
    logger: logs.logger,
    random: () => 0.5,
    schedule: timers.schedule,
    quota,
  });
  return { cache, calls: fake.calls, timers };
}

describe('UPSTREAM_TOKEN_QUOTA', () => {
  it('when the setting is read, then count and period are parsed and anything else is refused', () => {
    expect(parseTokenQuota('1000/day')).toEqual({ limit: 1000, period: 'day' });
    expect(parseTokenQuota(' 100 / Hour ')).toEqual({ limit: 100, period: 'hour' });
    expect(parseTokenQuota('50000/month')).toEqual({ limit: 50000, period: 'month' });
    for (const bad of ['0/day', '10/week', 'ten/day', '10', '-5/hour']) {
      expect(parseTokenQuota(bad)).toMatch(/^must be <count>\/<minute\|hour\|day\|month>/);
    }
  });

  it('when windows are computed, then they are fixed and aligned to the UTC minute, hour, day and calendar month', () => {
    const now = Date.UTC(2026, 1, 14, 23, 59, 30, 500);
    expect(quotaWindow('minute', now)).toEqual({
      start: Date.UTC(2026, 1, 14, 23, 59),
      end: Date.UTC(2026, 1, 15, 0, 0),
    });
    expect(quotaWindow('hour', now)).toEqual({
      start: Date.UTC(2026, 1, 14, 23),
      end: Date.UTC(2026, 1, 15),
    });
    expect(quotaWindow('day', now)).toEqual({ start: Date.UTC(2026, 1, 14), end: Date.UTC(2026, 1, 15) });
    expect(quotaWindow('month', now)).toEqual({ start: Date.UTC(2026, 1, 1), end: Date.UTC(2026, 2, 1) });
    expect(quotaWindow('month', Date.UTC(2026, 11, 31, 23))).toEqual({
      start: Date.UTC(2026, 11, 1),
      end: Date.UTC(2027, 0, 1),
    });
  });
});

describe('quota governor', () => {
  it('when the window rolls over, then the budget is whole again', async () => {
    const clock = createManualClock(start);
    const { governor: quota } = governor(clock, { limit: 3, period: 'minute' });
    for (let i = 0; i < 3; i += 1) expect(await quota.allow('needed')).toEqual({ allowed: true });
    expect((await quota.allow('needed')).allowed).toBe(false);
    expect(quota.status()).toEqual({ limit: 3, used: 3, resetsAt: start + 60_000 });

    clock.advance(60_000);
    expect(quota.status()).toEqual({ limit: 3, used: 0, resetsAt: start + 120_000 });
    expect(await quota.allow('needed')).toEqual({ allowed: true });
    expect(quota.status().used).toBe(1);
  });

  it('when 80 % of the budget is used, then one warning is logged per window', async () => {
    const clock = createManualClock(start);
    const { governor: quota, at } = governor(clock, { limit: 10, period: 'hour' });
    for (let i = 0; i < 7; i += 1) await quota.allow('needed');
    expect(at('warn')).toHaveLength(0);
    await quota.allow('needed');
    await quota.allow('needed');
    expect(at('warn')).toEqual([
      expect.objectContaining({ msg: 'upstream token quota 80 % used in this window', limit: 10, used: 8 }),
    ]);

    clock.advance(hour);
    for (let i = 0; i < 9; i += 1) await quota.allow('needed');
    expect(at('warn')).toHaveLength(2);
  });

  it('when 90 % is used, then early renewals are refused while needed requests still go out', async () => {
    const clock = createManualClock(start);
    const { governor: quota } = governor(clock, { limit: 10, period: 'hour' });
    for (let i = 0; i < 8; i += 1) await quota.allow('needed');
    expect((await quota.allow('early')).allowed).toBe(true);
    const early = await quota.allow('early');
    expect(early.allowed).toBe(false);
    expect(quota.status().used).toBe(9);
    expect((await quota.allow('needed')).allowed).toBe(true);
    expect(quota.status().used).toBe(10);
  });

  it('when the counter cannot be reached, then requests are allowed and one warning says so', async () => {
    const clock = createManualClock(start);
    const broken: QuotaCounter = {
      increment: () => Promise.reject(new Error('connection refused')),
      current: () => Promise.reject(new Error('connection refused')),
    };
    const { governor: quota, at } = governor(clock, { limit: 1, period: 'hour' }, broken);
    expect(await quota.allow('needed')).toEqual({ allowed: true });
    expect(await quota.allow('early')).toEqual({ allowed: true });
    expect(at('warn')).toEqual([
      expect.objectContaining({ msg: expect.stringMatching(/counter unreachable/) }),
    ]);
  });
});

describe('token cache under a quota', () => {
  it('when the budget is nearly spent, then the cache stops renewing early and serves its token until it expires', async () => {
    const clock = createManualClock(start);
    const counter = createMemoryQuotaCounter({ clock });
    const { governor: quota } = governor(clock, { limit: 20, period: 'day' }, counter);
    // Other replicas have spent 17 of 20 today.
    const others = governor(clock, { limit: 20, period: 'day' }, counter).governor;
    for (let i = 0; i < 17; i += 1) await others.allow('needed');
    const r = replica(clock, quota);

    const first = await r.cache.get();
    expect(quota.status().used).toBe(18);
    // Past the renewal point (an hour-long token renews 342 s before expiry with random = 0.5).
    await r.timers.advance(hour - 300_000);
    expect(r.calls.count).toBe(1);
    expect((await r.cache.get()).accessToken).toBe(first.accessToken);
    await r.timers.advance(299_999);
    expect((await r.cache.get()).accessToken).toBe(first.accessToken);
    expect(r.calls.count).toBe(1);

    await r.timers.advance(1);
    const second = await r.cache.get();
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(r.calls.count).toBe(2);
    expect(quota.status().used).toBe(19);
    r.cache.close();
  });

  it('when the budget is spent, then callers get 503 upstream_unavailable with Retry-After to the reset and the upstream is not called', async () => {
    const clock = createManualClock(start);
    const { governor: quota, at } = governor(clock, { limit: 2, period: 'hour' });
    const r = replica(clock, quota);
    await r.cache.invalidate((await r.cache.get()).accessToken);
    await r.cache.invalidate((await r.cache.get()).accessToken);
    clock.advance(15_500);

    const refused = await refusal(r.cache.get());
    expect(refused.code).toBe('upstream_unavailable');
    expect(refused.status).toBe(503);
    // 10:20:15.5 → 11:00:00: 2384.5 s, rounded up.
    expect(refused.headers).toEqual({ 'Retry-After': '2385' });
    expect((await refusal(r.cache.get())).code).toBe('upstream_unavailable');
    expect(r.calls.count).toBe(2);
    expect(at('error')).toHaveLength(1);
    expect(r.cache.status().lastError).toBeUndefined();

    clock.set(Date.UTC(2026, 4, 12, 11));
    await r.cache.get();
    expect(r.calls.count).toBe(3);
    r.cache.close();
  });

  it('when two replicas share one counter, then together they stay within the budget', async () => {
    const clock = createManualClock(start);
    const counter = createMemoryQuotaCounter({ clock });
    const a = replica(clock, governor(clock, { limit: 3, period: 'hour' }, counter).governor);
    const bGovernor = governor(clock, { limit: 3, period: 'hour' }, counter).governor;
    const b = replica(clock, bGovernor);

    await a.cache.get();
    await b.cache.invalidate((await b.cache.get()).accessToken);
    await b.cache.get();
    expect(bGovernor.status()).toMatchObject({ used: 3 });

    await a.cache.invalidate((await a.cache.get()).accessToken);
    expect((await refusal(a.cache.get())).headers['Retry-After']).toBe('2400');
    expect(a.calls.count + b.calls.count).toBe(3);
    a.cache.close();
    b.cache.close();
  });
});

describe.skipIf(noRedis)('Redis quota counter', () => {
  const { admin: redis, prefix: newPrefix } = sharedRedisScratch('quota');
  const prefix = newPrefix();

  it('when two replicas count at once, then INCR loses nothing and PEXPIRE lets the window lapse', async () => {
    const [one, two] = [
      createRedisQuotaCounter({ client: redis, prefix }),
      createRedisQuotaCounter({ client: redis, prefix }),
    ];
    const counts = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? one : two).increment('window-a', 60_000)),
    );
    expect([...counts].sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(await two.current('window-a')).toBe(40);
    expect(await one.current('window-b')).toBe(0);
    const ttl = await redis.pttl(`${prefix}window-a`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('when Redis loses the count of a window, then counting resumes above the highest count this replica saw', async () => {
    const counter = createRedisQuotaCounter({ client: redis, prefix });
    for (let i = 0; i < 5; i += 1) await counter.increment('window-lost', 60_000);
    await redis.del(`${prefix}window-lost`);
    expect(await counter.increment('window-lost', 60_000)).toBe(6);
    expect(await redis.get(`${prefix}window-lost`)).toBe('6');
  });
});
