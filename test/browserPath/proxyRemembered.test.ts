import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { call, type RawAnswer } from '../support/rawCall.js';

/**
 * The broker remembers a verified token's signature until its `exp` (signing/verifiedTokens.ts); every
 * other check must still run on every call of a remembered token.
 */
const appOrigin = 'https://app.example.com';
const otherOrigin = 'https://other.example.com';
const browserIp = '198.51.100.7';

let auth: TestAuthServer;
let api: ApiServer;
let broker: OidcBroker;

beforeAll(async () => {
  auth = await startTestAuthServer();
  api = await startEchoApi();
  broker = await startBroker({
    upstream: auth,
    logLevel: 'debug',
    env: {
      ALLOWED_ORIGINS: `${appOrigin},${otherOrigin}`,
      TRUST_PROXY: 'loopback',
      UPSTREAM_API_URL: `${api.origin}/v1/`,
    },
  });
});

afterAll(async () => {
  await broker?.close();
  await api?.close();
  await auth?.close();
});

beforeEach(() => {
  api.requests.length = 0;
});

async function browserToken(): Promise<string> {
  const answer = await call(broker.url, '/api/client-token', {
    method: 'POST',
    headers: { origin: appOrigin, 'x-forwarded-for': browserIp },
  });
  expect(answer.status).toBe(200);
  return registerSecret('client token', answer.json().token as string);
}

function proxyCall(token: string, { origin = appOrigin, ip = browserIp } = {}): Promise<RawAnswer> {
  return call(broker.url, '/api/proxy/things', {
    headers: { origin, 'x-forwarded-for': ip, authorization: `Bearer ${token}` },
  });
}

describe('a remembered client token on the proxy', () => {
  it('when it is revoked after use, then the next call is refused with token_revoked and no API call', async () => {
    const token = await browserToken();
    expect((await proxyCall(token)).status).toBe(200);
    expect((await proxyCall(token)).status).toBe(200);
    const revoked = await call(broker.url, '/api/client-token/revoke', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${broker.apiKey}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }).toString(),
    });
    expect(revoked.status).toBe(200);
    const answer = await proxyCall(token);
    expect(answer.status).toBe(401);
    expect(answer.json()).toMatchObject({ code: 'token_revoked' });
    expect(api.requests).toHaveLength(2);
  });

  it('when it comes from another origin or address after use, then it is refused each time', async () => {
    const token = await browserToken();
    expect((await proxyCall(token)).status).toBe(200);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const otherSite = await proxyCall(token, { origin: otherOrigin });
      expect(otherSite.status).toBe(403);
      expect(otherSite.json()).toMatchObject({ code: 'origin_mismatch' });
      const otherIp = await proxyCall(token, { ip: '198.51.100.8' });
      expect(otherIp.status).toBe(403);
      expect(otherIp.json()).toMatchObject({ code: 'ip_mismatch' });
    }
    expect((await proxyCall(token)).status).toBe(200);
    expect(api.requests).toHaveLength(2);
  });
});
