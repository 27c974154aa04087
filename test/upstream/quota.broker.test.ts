import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, toPublicJwks } from '../../src/cli/jwks.js';
import { createManualClock } from '../../src/clock.js';
import { quotaWindow } from '../../src/upstream/quota.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

const clientId = 'quota-pkjwt-client';
// Close to real time: the provider checks the assertions' `exp` against its own clock.
const clock = createManualClock(Date.now());
let auth: TestAuthServer;
let broker: OidcBroker;

beforeAll(async () => {
  const key = await generateSigningKey('ES256');
  registerSecret('quota broker client key', JSON.stringify(key));
  registerSecret('quota broker client key d', key.d as string);
  auth = await startTestAuthServer({
    privateKeyJwtClients: [{ clientId, jwks: toPublicJwks({ keys: [key] }).jwks }],
  });
  broker = await startBroker({
    env: {
      UPSTREAM_CLIENT_ID: clientId,
      UPSTREAM_CLIENT_SECRET: '',
      UPSTREAM_AUTH_METHOD: 'private_key_jwt',
      UPSTREAM_CLIENT_KEY: JSON.stringify({ keys: [key] }),
      UPSTREAM_TOKEN_QUOTA: '2/hour',
    },
    upstream: auth,
    clock,
  });
});

afterAll(async () => {
  await broker?.close();
  await auth?.close();
});

async function upstreamToken() {
  const res = await request(broker.url)
    .get('/api/upstream-token')
    .set('Authorization', `Bearer ${broker.apiKey}`);
  if (res.status === 200) registerSecret('quota broker upstream token', res.body.access_token as string);
  return res;
}

function remaining(metrics: string): number | undefined {
  const line = metrics
    .split('\n')
    .find((entry) => entry.startsWith('token_broker_upstream_token_quota_remaining{upstream="default"} '));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('broker with private_key_jwt and UPSTREAM_TOKEN_QUOTA=2/hour against a real oidc-provider', () => {
  it('when the hourly budget is spent, then /api/upstream-token answers 503 upstream_unavailable with Retry-After to the next hour, and the gauge shows 0 left', async () => {
    const first = await upstreamToken();
    expect(first.status).toBe(200);
    expect(remaining((await request(broker.url).get('/metrics')).text)).toBe(1);

    await broker.broker.upstreams.list[0]?.credentials.invalidate(first.body.access_token as string);
    const second = await upstreamToken();
    expect(second.status).toBe(200);
    expect(second.body.access_token).not.toBe(first.body.access_token);

    await broker.broker.upstreams.list[0]?.credentials.invalidate(second.body.access_token as string);
    const refused = await upstreamToken();
    expect(refused.status).toBe(503);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body.code).toBe('upstream_unavailable');
    const reset = quotaWindow('hour', clock.now()).end;
    expect(refused.headers['retry-after']).toBe(String(Math.ceil((reset - clock.now()) / 1000)));

    expect(auth.tokenRequests()).toBe(2);
    expect(remaining((await request(broker.url).get('/metrics')).text)).toBe(0);
    const spent = broker.logs
      .lines()
      .filter((line) => line.component === 'tokenQuota' && line.level === 'error');
    expect(spent).toEqual([expect.objectContaining({ limit: 2, used: 2, period: 'hour' })]);
  });
});
