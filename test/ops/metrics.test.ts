import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { type ApiServer, startFixedApi } from '../support/apiServers.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { sample } from '../support/metricsText.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

const allowed = 'https://app.example.com';

async function scrape(url: string, apiKey?: string): Promise<string> {
  const req = request(url).get('/metrics');
  const res = await (apiKey ? req.set('Authorization', `Bearer ${apiKey}`) : req);
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text;
}

let auth: TestAuthServer;
let api: ApiServer;

beforeAll(async () => {
  auth = await startTestAuthServer();
  api = await startFixedApi();
});
afterAll(async () => {
  await api?.close();
  await auth?.close();
});

describe('GET /metrics after real traffic', () => {
  const clock = createManualClock(Date.now());
  let broker: OidcBroker;
  beforeAll(async () => {
    broker = await startBroker({ env: { UPSTREAM_API_URL: api.origin }, upstream: auth, clock });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('when tokens are minted, claimed, verified and the upstream is asked, then every counter moved by exactly that much', async () => {
    const before = await scrape(broker.url);
    expect(sample(before, 'token_broker_client_tokens_total', { route: 'client-token' })).toBeUndefined();
    expect(sample(before, 'token_broker_upstream_token_expires_in_seconds')).toBe(0);
    expect(sample(before, 'token_broker_upstream_breaker_state', { state: 'closed' })).toBe(1);

    const minted: string[] = [];
    for (const method of ['post', 'get'] as const) {
      const res = await request(broker.url)[method]('/api/client-token').set('Origin', allowed);
      expect(res.status).toBe(200);
      minted.push(registerSecret('client token', res.body.token as string));
    }
    expect(
      (await request(broker.url).post('/api/client-token').set('Origin', 'https://evil.example')).status,
    ).toBe(403);
    expect((await request(broker.url).post('/api/client-token')).status).toBe(400);
    const claim = await request(broker.url)
      .post('/api/auth/claim')
      .set('Authorization', `Bearer ${broker.apiKey}`)
      .send({ origin: 'https://backend.example.com', ip: '203.0.113.7' });
    expect(claim.status).toBe(200);
    registerSecret('claimed token', claim.body.token as string);
    expect((await request(broker.url).post('/api/auth/claim').send({ origin: allowed })).status).toBe(401);

    const upstreamCall = () =>
      request(broker.url).get('/api/upstream-token').set('Authorization', `Bearer ${broker.apiKey}`);
    const first = await upstreamCall();
    expect(first.status).toBe(200);
    registerSecret('upstream token', first.body.access_token as string);
    expect((await upstreamCall()).status).toBe(200);

    const proxied = await request(broker.url)
      .get('/api/proxy/things?x=1')
      .set('Origin', allowed)
      .set('Authorization', `Bearer ${minted[0]}`);
    expect(proxied.status).toBe(200);
    expect(
      (
        await request(broker.url)
          .get('/api/proxy/things')
          .set('Origin', 'https://other.example.com')
          .set('Authorization', `Bearer ${minted[1]}`)
      ).status,
    ).toBe(403);
    expect((await request(broker.url).get('/api/proxy/things').set('Origin', allowed)).status).toBe(401);

    const after = await scrape(broker.url);
    const count = (name: string, labels: Record<string, string>) => sample(after, name, labels);
    expect(count('token_broker_client_tokens_total', { route: 'client-token', outcome: 'issued' })).toBe(2);
    expect(
      count('token_broker_client_tokens_total', { route: 'client-token', outcome: 'origin_not_allowed' }),
    ).toBe(1);
    expect(
      count('token_broker_client_tokens_total', { route: 'client-token', outcome: 'origin_required' }),
    ).toBe(1);
    expect(count('token_broker_client_tokens_total', { route: 'claim', outcome: 'issued' })).toBe(1);
    expect(count('token_broker_client_tokens_total', { route: 'claim', outcome: 'invalid_api_key' })).toBe(1);

    expect(count('token_broker_client_token_verifications_total', { outcome: 'valid' })).toBe(1);
    expect(count('token_broker_client_token_verifications_total', { outcome: 'origin_mismatch' })).toBe(1);
    expect(count('token_broker_client_token_verifications_total', { outcome: 'invalid_client_token' })).toBe(
      1,
    );

    expect(count('token_broker_proxy_request_duration_seconds_count', { method: 'GET', status: '200' })).toBe(
      1,
    );
    expect(count('token_broker_proxy_request_duration_seconds_count', { method: 'GET', status: '403' })).toBe(
      1,
    );
    expect(count('token_broker_proxy_request_duration_seconds_count', { method: 'GET', status: '401' })).toBe(
      1,
    );
    expect(
      count('token_broker_proxy_request_duration_seconds_sum', { method: 'GET', status: '200' }),
    ).toBeGreaterThan(0);

    // One upstream request however many callers: the proxy reused the token the first call obtained.
    expect(auth.tokenRequests()).toBe(1);
    const grant = { grant: 'client_credentials', outcome: 'success' };
    expect(count('token_broker_upstream_token_request_duration_seconds_count', grant)).toBe(1);
    expect(
      count('token_broker_upstream_token_request_duration_seconds_bucket', { ...grant, le: '+Inf' }),
    ).toBe(1);
    expect(count('token_broker_upstream_token_request_duration_seconds_sum', grant)).toBeGreaterThan(0);
    expect(count('token_broker_token_cache_events_total', { event: 'miss' })).toBe(1);
    expect(count('token_broker_token_cache_events_total', { event: 'hit' })).toBe(2);
    expect(count('token_broker_upstream_token_expires_in_seconds', {})).toBe(300);
    expect(count('token_broker_upstream_breaker_state', { state: 'closed' })).toBe(1);
    expect(count('token_broker_upstream_breaker_state', { state: 'open' })).toBe(0);
    expect(count('token_broker_redis_degraded', {})).toBe(0);
    // Node's default process metrics are on the same registry.
    expect(count('process_cpu_user_seconds_total', {})).toBeGreaterThan(0);
    expect(after).toContain('nodejs_eventloop_lag_seconds');
  });

  it('when the token is past its renewal time, then a background renewal is counted and the expiry gauge follows the clock', async () => {
    clock.advance(280_000);
    const mid = await scrape(broker.url);
    expect(sample(mid, 'token_broker_upstream_token_expires_in_seconds')).toBe(20);

    const res = await request(broker.url)
      .get('/api/upstream-token')
      .set('Authorization', `Bearer ${broker.apiKey}`);
    expect(res.status).toBe(200);
    registerSecret('upstream token', res.body.access_token as string);
    await expect.poll(() => auth.tokenRequests()).toBe(2);
    await expect
      .poll(async () => sample(await scrape(broker.url), 'token_broker_upstream_token_expires_in_seconds'))
      .toBe(300);

    const after = await scrape(broker.url);
    expect(sample(after, 'token_broker_token_cache_events_total', { event: 'background_renewal' })).toBe(1);
    expect(
      sample(after, 'token_broker_upstream_token_request_duration_seconds_count', {
        grant: 'client_credentials',
        outcome: 'success',
      }),
    ).toBe(2);
  });

  it('when the Redis store reports itself degraded, then the gauge says so until it recovers', async () => {
    broker.broker.metrics.setRedisDegraded(true);
    expect(sample(await scrape(broker.url), 'token_broker_redis_degraded')).toBe(1);
    broker.broker.metrics.setRedisDegraded(false);
    expect(sample(await scrape(broker.url), 'token_broker_redis_degraded')).toBe(0);
  });
});

describe('upstream failures in metrics', () => {
  it('when the upstream refuses the broker’s credentials, then the request is counted as rejected and no token is held', async () => {
    const wrong = registerSecret('wrong client secret', randomBytes(24).toString('base64url'));
    const broker = await startBroker({ env: { UPSTREAM_CLIENT_SECRET: wrong }, upstream: auth });
    const res = await request(broker.url)
      .get('/api/upstream-token')
      .set('Authorization', `Bearer ${broker.apiKey}`);
    expect(res.status).toBe(502);
    const text = await scrape(broker.url);
    const labels = { grant: 'client_credentials', outcome: 'rejected' };
    expect(sample(text, 'token_broker_upstream_token_request_duration_seconds_count', labels)).toBe(1);
    expect(sample(text, 'token_broker_upstream_token_expires_in_seconds')).toBe(0);
    expect(sample(text, 'token_broker_token_cache_events_total', { event: 'miss' })).toBe(1);
  });
});

describe('where /metrics is served', () => {
  it('when METRICS_REQUIRE_API_KEY is true, then a scrape without the key is refused with a problem and one with it succeeds', async () => {
    const broker = await startBroker({ env: { METRICS_REQUIRE_API_KEY: 'true' }, upstream: auth });
    const refused = await request(broker.url).get('/metrics');
    expect(refused.status).toBe(401);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body.code).toBe('invalid_api_key');
    expect(await scrape(broker.url, broker.apiKey)).toContain('token_broker_redis_degraded 0');
  });

  it('when METRICS_PORT is set, then the main app has no /metrics and the metrics app serves only /metrics', async () => {
    const broker = await startBroker({ env: { METRICS_PORT: '9464' }, upstream: auth });
    expect((await request(broker.url).get('/metrics')).status).toBe(404);
    const metricsApp = broker.broker.metricsApp;
    expect(metricsApp).toBeDefined();
    if (!metricsApp) return;
    const res = await request(metricsApp).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain('token_broker_client_tokens_total');
    const other = await request(metricsApp).get('/api/client-token').set('Origin', allowed);
    expect(other.status).toBe(404);
    expect(other.body.code).toBe('not_found');
  });

  it('when two brokers run in one process, then neither sees the other’s numbers', async () => {
    const a = await startBroker({ upstream: auth });
    const b = await startBroker({ upstream: auth });
    expect((await request(a.url).post('/api/client-token').set('Origin', allowed)).status).toBe(200);
    const issued = { route: 'client-token', outcome: 'issued' };
    expect(sample(await scrape(a.url), 'token_broker_client_tokens_total', issued)).toBe(1);
    expect(sample(await scrape(b.url), 'token_broker_client_tokens_total', issued)).toBeUndefined();
  });
});

describe('metrics settings', () => {
  const base = {
    UPSTREAM_TOKEN_URL: 'https://auth.example.com/token',
    UPSTREAM_CLIENT_ID: 'broker',
    UPSTREAM_CLIENT_SECRET: 'not-a-real-secret',
  };
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig({ ...base, ...env });
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  it('when METRICS_PORT equals PORT, then start-up names METRICS_PORT', () => {
    expect(problems({ PORT: '8080', METRICS_PORT: '8080' })).toEqual([
      expect.stringMatching(/^METRICS_PORT: /),
    ]);
  });

  it('when METRICS_REQUIRE_API_KEY is true without BROKER_API_KEYS, then start-up says a key is needed', () => {
    expect(problems({ METRICS_REQUIRE_API_KEY: 'true' })).toEqual([
      expect.stringMatching(/^METRICS_REQUIRE_API_KEY: needs BROKER_API_KEYS/),
    ]);
  });

  it('when METRICS_REQUIRE_API_KEY is neither true nor false, then start-up refuses it', () => {
    expect(problems({ METRICS_REQUIRE_API_KEY: 'yes' })).toEqual([
      expect.stringMatching(/^METRICS_REQUIRE_API_KEY: /),
    ]);
  });

  it('when neither is set, then /metrics is served on PORT without a key', () => {
    expect(loadConfig(base).metrics).toEqual({ port: undefined, requireApiKey: false });
  });
});
