import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import { BrokerError, UpstreamError } from '../../src/errors.js';
import { createMemoryStore } from '../../src/store/memoryStore.js';
import type { KeyValueStore } from '../../src/store/types.js';
import { cacheKey } from '../../src/upstream/cacheKey.js';
import { createTokenCache, type TokenCacheOptions } from '../../src/upstream/tokenCache.js';
import type { TokenClient, UpstreamToken } from '../../src/upstream/types.js';
import { createFakeTimers } from '../support/fakeTimers.js';
import { captureLogs, registerSecret } from '../support/logs.js';

const hour = 3_600_000;
const tokenEndpoint = 'https://as.example.test/oauth/token';
const config = {
  clientId: 'broker-client',
  clientSecret: registerSecret('upstream client secret', `client-secret-${randomUUID()}`),
  profile: 'rfc6749',
  authMethod: 'client_secret_basic',
  audience: 'https://api.example.test',
  scope: 'read write',
  resource: undefined,
} satisfies TokenCacheOptions['config'];

/** With `random` fixed at 0.5, an hour-long token is renewed 360 s - 18 s of jitter = 342 s before expiry. */
const renewBeforeExpiry = 342_000;

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What a promise has done once every pending microtask has run. */
async function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown; pending: boolean }> {
  const outcome: { value?: T; error?: unknown; pending: boolean } = { pending: true };
  promise.then(
    (value) => Object.assign(outcome, { value, pending: false }),
    (error: unknown) => Object.assign(outcome, { error, pending: false }),
  );
  await flush();
  return outcome;
}

/** A TokenClient that mints registered fake tokens, counts its calls, and can fail or stall on demand. */
function createFakeClient(clock: ManualClock, { lifetimeMs = hour, refreshTokens = false } = {}) {
  const minted: string[] = [];
  const calls = { clientCredentials: 0, refresh: [] as string[] };
  const control = {
    /** Every grant throws this while set. */
    failWith: undefined as Error | undefined,
    /** `refresh` alone throws this while set. */
    refreshFailsWith: undefined as Error | undefined,
    /** Refresh answers carry a new refresh token. */
    rotateRefreshTokens: true,
    /** Grants wait for this before answering. */
    gate: undefined as Promise<void> | undefined,
  };
  function mint(secretLabel: string, prefix: string): string {
    const value = registerSecret(
      `fake upstream ${secretLabel} ${minted.length}`,
      `${prefix}-${randomUUID()}`,
    );
    minted.push(value);
    return value;
  }
  async function answer(withRefreshToken: boolean): Promise<UpstreamToken> {
    await control.gate;
    if (control.failWith) throw control.failWith;
    const now = clock.now();
    return {
      accessToken: mint('access token', 'upstream-access'),
      tokenType: 'Bearer',
      obtainedAt: now,
      expiresAt: now + lifetimeMs,
      refreshToken: withRefreshToken ? mint('refresh token', 'upstream-refresh') : undefined,
    };
  }
  const client: TokenClient = {
    async clientCredentials() {
      calls.clientCredentials += 1;
      return answer(refreshTokens);
    },
    async refresh(refreshToken) {
      calls.refresh.push(refreshToken);
      if (control.refreshFailsWith) throw control.refreshFailsWith;
      return answer(control.rotateRefreshTokens);
    },
    tokenEndpoint: async () => tokenEndpoint,
  };
  const total = () => calls.clientCredentials + calls.refresh.length;
  return { client, calls, control, minted, total };
}

interface SetupOptions {
  clock?: ManualClock;
  store?: KeyValueStore;
  refreshTokens?: boolean;
  random?: () => number;
}

function setup(options: SetupOptions = {}) {
  const clock = options.clock ?? createManualClock();
  const logs = captureLogs();
  const fake = createFakeClient(clock, options);
  const timers = createFakeTimers(clock);
  const cache = createTokenCache({
    client: fake.client,
    config,
    clock,
    logger: logs.logger,
    store: options.store,
    random: options.random ?? (() => 0.5),
    schedule: timers.schedule,
  });
  const linesAt = (level: string) => logs.lines().filter((line) => line.level === level);
  function expectNoTokenLogged(): void {
    const text = JSON.stringify(logs.lines());
    expect(logs.lines().length).toBeGreaterThan(0);
    for (const token of [...fake.minted, config.clientSecret]) expect(text.includes(token)).toBe(false);
  }
  return { clock, logs, linesAt, cache, timers, ...fake, expectNoTokenLogged };
}

async function rejectionOf(promise: Promise<unknown>): Promise<BrokerError> {
  const outcome = await settle(promise);
  expect(outcome.pending).toBe(false);
  expect(outcome.error).toBeInstanceOf(BrokerError);
  return outcome.error as BrokerError;
}

describe('upstream token cache', () => {
  it('when 200 callers arrive on a cold cache, then one client call serves them all, and a second wave makes none', async () => {
    const t = setup();
    const first = await Promise.all(Array.from({ length: 200 }, () => t.cache.get()));
    expect(t.calls.clientCredentials).toBe(1);
    expect(new Set(first.map((token) => token.accessToken))).toEqual(new Set([t.minted[0]]));

    await t.timers.advance(hour - renewBeforeExpiry - 1);
    const second = await Promise.all(Array.from({ length: 200 }, () => t.cache.get()));
    expect(t.total()).toBe(1);
    expect(second.every((token) => token.accessToken === t.minted[0])).toBe(true);
    t.expectNoTokenLogged();
  });

  it('when a valid token is held, then get() answers from memory without touching the store or the client', async () => {
    const memory = createMemoryStore({ clock: createManualClock() });
    const reads = { count: 0 };
    const store: KeyValueStore = {
      ...memory,
      get: (key) => {
        reads.count += 1;
        return memory.get(key);
      },
    };
    const t = setup({ store });
    await t.cache.get();
    const readsAfterFirst = reads.count;
    const outcome = await settle(t.cache.get());
    expect(outcome.value?.accessToken).toBe(t.minted[0]);
    expect(reads.count).toBe(readsAfterFirst);
    expect(t.total()).toBe(1);
    expect(t.cache.status()).toMatchObject({ hasToken: true, expiresAt: t.clock.now() + hour });
  });

  it('when the renewal point passes, then callers get the old token at once while one background renewal runs', async () => {
    const t = setup();
    const old = await t.cache.get();
    let release = () => {};
    t.control.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    t.clock.advance(hour - renewBeforeExpiry + 1);

    const outcomes = await Promise.all(Array.from({ length: 50 }, () => settle(t.cache.get())));
    expect(outcomes.every((outcome) => outcome.value?.accessToken === old.accessToken)).toBe(true);
    expect(t.calls.clientCredentials).toBe(2);

    release();
    await flush();
    const renewed = await settle(t.cache.get());
    expect(renewed.value?.accessToken).toBe(t.minted[1]);
    expect(t.total()).toBe(2);
    t.expectNoTokenLogged();
  });

  it('when no caller comes, then the timer renews the token ahead of expiry, and close() stops it', async () => {
    const t = setup();
    await t.cache.get();
    await t.timers.advance(hour - renewBeforeExpiry - 1);
    expect(t.total()).toBe(1);
    await t.timers.advance(1);
    expect(t.total()).toBe(2);
    expect(t.cache.status().expiresAt).toBe(t.clock.now() + hour);

    t.cache.close();
    expect(t.timers.pending()).toBe(0);
    await t.timers.advance(hour);
    expect(t.total()).toBe(2);
  });

  it('when renewals fail, then the old token is served until it expires, calls stay bounded, and the cache recovers', async () => {
    const t = setup();
    const old = await t.cache.get();
    t.control.failWith = new UpstreamError('network', { description: 'connect ECONNREFUSED' });
    await t.timers.advance(hour - renewBeforeExpiry);

    // Traffic every second through the rest of the token's life.
    for (let second = 0; second < renewBeforeExpiry / 1000 - 1; second += 1) {
      const outcome = await settle(t.cache.get());
      expect(outcome.value?.accessToken).toBe(old.accessToken);
      await t.timers.advance(1_000);
    }
    const callsDuringFault = t.total();
    expect(callsDuringFault).toBeGreaterThan(5);
    // Five quick retries, then at most one probe per 30 s breaker pause over 342 s.
    expect(callsDuringFault).toBeLessThanOrEqual(1 + 5 + Math.ceil(renewBeforeExpiry / 30_000));
    expect(t.linesAt('warn')).toHaveLength(1);

    await t.timers.advance(1_000);
    const refused = await rejectionOf(t.cache.get());
    expect(refused.code).toBe('upstream_unavailable');
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['Retry-After'])).toBeGreaterThanOrEqual(1);
    const burst = await Promise.all(Array.from({ length: 20 }, () => settle(t.cache.get())));
    expect(burst.every((outcome) => (outcome.error as BrokerError).code === 'upstream_unavailable')).toBe(
      true,
    );
    expect(t.total()).toBeLessThanOrEqual(callsDuringFault + 1);
    expect(t.cache.status()).toMatchObject({ hasToken: false, lastError: { error: 'network' } });

    t.control.failWith = undefined;
    await t.timers.advance(30_000);
    const recovered = await t.cache.get();
    expect(recovered.accessToken).toBe(t.minted[1]);
    expect(t.cache.status().lastError).toBeUndefined();
    expect(t.logs.lines().some((line) => line.msg === 'upstream token renewal recovered')).toBe(true);
    t.expectNoTokenLogged();
  });

  it('when a background renewal fails and no caller comes, then the timer retries after the backoff', async () => {
    const t = setup();
    await t.cache.get();
    t.control.failWith = new UpstreamError('timeout');
    await t.timers.advance(hour - renewBeforeExpiry);
    expect(t.total()).toBe(2);
    expect(t.timers.pending()).toBe(1);
    t.control.failWith = undefined;
    await t.timers.advance(250);
    expect(t.total()).toBe(3);
    expect(t.cache.status()).toMatchObject({
      hasToken: true,
      expiresAt: t.clock.now() + hour,
      lastError: undefined,
    });
  });

  it("when the upstream stays down on a cold cache, then calls stop after five failures and it is probed every 2 s (issue #24: not after the breaker's 30 s)", async () => {
    const t = setup({ random: () => 0 });
    t.control.failWith = new UpstreamError('http_503', { httpStatus: 503 });
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const refused = await rejectionOf(t.cache.get());
      expect(refused.code).toBe('upstream_unavailable');
    }
    expect(t.total()).toBe(5);
    const refused = await rejectionOf(t.cache.get());
    expect(refused.headers['Retry-After']).toBe('2');

    await t.timers.advance(1_999);
    await rejectionOf(t.cache.get());
    expect(t.total()).toBe(5);
    await t.timers.advance(1);
    await rejectionOf(t.cache.get());
    expect(t.total()).toBe(6);
    t.control.failWith = undefined;
    await t.timers.advance(2_000);
    expect((await t.cache.get()).accessToken).toBe(t.minted[0]);
    expect(t.linesAt('warn')).toHaveLength(1);
    t.expectNoTokenLogged();
  });

  it('when the held token has a refresh token, then renewal refreshes with it and keeps it if the answer has none', async () => {
    const t = setup({ refreshTokens: true });
    const first = await t.cache.get();
    expect(first.refreshToken).toBe(t.minted[1]);

    t.control.rotateRefreshTokens = false;
    await t.timers.advance(hour - renewBeforeExpiry);
    expect(t.calls.refresh).toEqual([first.refreshToken]);
    const second = await t.cache.get();
    expect(second.accessToken).toBe(t.minted[2]);
    expect(second.refreshToken).toBe(first.refreshToken);

    await t.timers.advance(hour - renewBeforeExpiry);
    expect(t.calls.refresh).toEqual([first.refreshToken, first.refreshToken]);
    expect(t.calls.clientCredentials).toBe(1);
    t.expectNoTokenLogged();
  });

  it('when the refresh token is refused with invalid_grant, then client credentials are used and it is logged at info', async () => {
    const t = setup({ refreshTokens: true });
    await t.cache.get();
    t.control.refreshFailsWith = new UpstreamError('invalid_grant', { httpStatus: 400 });
    await t.timers.advance(hour - renewBeforeExpiry);
    expect(t.calls.refresh).toHaveLength(1);
    expect(t.calls.clientCredentials).toBe(2);
    expect((await t.cache.get()).accessToken).toBe(t.minted[2]);
    expect(t.linesAt('info').some((line) => String(line.msg).includes('invalid_grant'))).toBe(true);
    expect(t.linesAt('warn')).toHaveLength(0);
    t.expectNoTokenLogged();
  });

  it('when the upstream answers invalid_client, then callers get upstream_rejected, logged at error once per minute, without a tight loop', async () => {
    const t = setup();
    t.control.failWith = new UpstreamError('invalid_client', {
      httpStatus: 401,
      description: 'client authentication failed',
    });
    const refused = await rejectionOf(t.cache.get());
    expect(refused.code).toBe('upstream_rejected');
    expect(refused.status).toBe(502);
    expect(refused.message.includes(config.clientSecret)).toBe(false);

    const burst = await Promise.all(Array.from({ length: 100 }, () => settle(t.cache.get())));
    expect(burst.every((outcome) => (outcome.error as BrokerError).code === 'upstream_rejected')).toBe(true);
    expect(t.total()).toBe(1);

    for (let step = 0; step < 10; step += 1) {
      await t.timers.advance(5_000);
      await rejectionOf(t.cache.get());
    }
    expect(t.total()).toBeLessThanOrEqual(11);
    const errors = t.linesAt('error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ error: 'invalid_client', httpStatus: 401 });

    await t.timers.advance(60_000);
    await rejectionOf(t.cache.get());
    expect(t.linesAt('error')).toHaveLength(2);
    t.expectNoTokenLogged();
  });

  it('when the upstream answers with Retry-After, then no call goes out before it and callers are told its seconds', async () => {
    const t = setup();
    t.control.failWith = new UpstreamError('temporarily_unavailable', { httpStatus: 503, retryAfter: 120 });
    const refused = await rejectionOf(t.cache.get());
    expect(refused.headers['Retry-After']).toBe('120');

    await t.timers.advance(119_000);
    expect((await rejectionOf(t.cache.get())).headers['Retry-After']).toBe('1');
    expect(t.total()).toBe(1);

    t.control.failWith = undefined;
    await t.timers.advance(1_000);
    expect((await t.cache.get()).accessToken).toBe(t.minted[0]);
    expect(t.total()).toBe(2);
  });

  it('when 50 callers invalidate the same old token and ask again, then exactly one new client call is made', async () => {
    const t = setup();
    const old = await t.cache.get();
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, index) => {
        // Half the callers report the 401 only after the new token has arrived.
        if (index % 2 === 1) await flush();
        await t.cache.invalidate(old.accessToken);
        return t.cache.get();
      }),
    );
    expect(t.total()).toBe(2);
    expect(results.every((token) => token.accessToken === t.minted[1])).toBe(true);

    const late = t.cache.invalidate(old.accessToken);
    expect(t.cache.status().hasToken).toBe(true);
    await late;
    expect((await t.cache.get()).accessToken).toBe(t.minted[1]);
    expect(t.total()).toBe(2);
    t.expectNoTokenLogged();
  });

  it('when a token is invalidated, then it is dropped from the store too and never adopted again', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    const t = setup({ clock, store });
    const old = await t.cache.get();
    const key = cacheKey({ ...config, tokenEndpoint, secret: config.clientSecret });
    expect(JSON.parse((await store.get(key)) ?? '{}')).toMatchObject({ accessToken: old.accessToken });

    await t.cache.invalidate(old.accessToken);
    await store.set(key, JSON.stringify(old), hour);
    expect((await t.cache.get()).accessToken).toBe(t.minted[1]);
  });

  it('when the store holds a valid token on a cold start, then it is used without a client call', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    const stored: UpstreamToken = {
      accessToken: registerSecret('stored upstream token', `stored-access-${randomUUID()}`),
      tokenType: 'Bearer',
      obtainedAt: clock.now(),
      expiresAt: clock.now() + hour,
    };
    await store.set(
      cacheKey({ ...config, tokenEndpoint, secret: config.clientSecret }),
      JSON.stringify(stored),
      hour,
    );
    const t = setup({ clock, store });
    expect((await t.cache.get()).accessToken).toBe(stored.accessToken);
    expect(t.total()).toBe(0);
  });

  it('when the secret rotates, then a token stored under the old secret is not served', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    const rotated = { ...config, clientSecret: `${config.clientSecret}-rotated` };
    const oldKey = cacheKey({ ...rotated, tokenEndpoint, secret: config.clientSecret });
    const stale = {
      accessToken: 'old-secret-token',
      tokenType: 'Bearer',
      obtainedAt: clock.now(),
      expiresAt: clock.now() + hour,
    };
    await store.set(oldKey, JSON.stringify(stale), hour);
    const fake = createFakeClient(clock);
    const cache = createTokenCache({
      client: fake.client,
      config: rotated,
      clock,
      logger: captureLogs().logger,
      store,
    });
    expect((await cache.get()).accessToken).toBe(fake.minted[0]);
    cache.close();
  });

  it('when a fetched token is stored, then it is JSON that expires from the store with the token', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    const t = setup({ clock, store });
    const token = await t.cache.get();
    const key = cacheKey({ ...config, tokenEndpoint, secret: config.clientSecret });
    clock.advance(hour - 1);
    expect(JSON.parse((await store.get(key)) ?? '{}')).toEqual(token);
    clock.advance(1);
    expect(await store.get(key)).toBeUndefined();
  });
});
