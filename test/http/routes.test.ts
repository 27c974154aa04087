import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCatalog } from '../../src/errors.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';

let broker: OidcBroker;
const allowed = 'https://app.example.com';

beforeAll(async () => {
  broker = await startBroker();
});
afterAll(async () => {
  await broker?.close();
});

function expectProblem(res: request.Response, status: number, code: keyof typeof errorCatalog) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, title: errorCatalog[code].title });
  expect(JSON.stringify(res.body)).not.toContain(broker.apiKey);
  expect(JSON.stringify(res.body)).not.toMatch(/\n\s+at /);
}

describe('GET/POST /api/client-token', () => {
  it('when an allowed origin asks, then it gets a no-store token bound to that origin and its IP', async () => {
    const res = await request(broker.url).post('/api/client-token').set('Origin', allowed);
    expect(res.status).toBe(200);
    registerSecret('client token', res.body.token);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['access-control-allow-origin']).toBe(allowed);
    expect(res.headers.vary).toMatch(/Origin/);
    expect(res.body).toMatchObject({ tokenType: 'Bearer', expiresIn: 900 });
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(890_000);

    const jwks = createRemoteJWKSet(new URL(`${broker.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(res.body.token, jwks, {
      issuer: 'urn:token-broker',
      audience: 'urn:token-broker:proxy',
      typ: 'client-token+jwt',
    });
    expect(payload).toMatchObject({ origin: allowed, ip: '127.0.0.1', sub: allowed });
    expect(typeof payload.jti).toBe('string');
    expect(payload.exp).toBe((payload.iat ?? 0) + 900);
    expect(protectedHeader).toMatchObject({ alg: 'EdDSA', kid: expect.any(String) });
  });

  it('when GET is used, then it answers the same way', async () => {
    const res = await request(broker.url)
      .get('/api/client-token')
      .set('Origin', 'https://a.apps.example.com');
    expect(res.status).toBe(200);
    registerSecret('client token', res.body.token);
  });

  it('when only a Referer is sent, then its origin is used', async () => {
    const res = await request(broker.url)
      .post('/api/client-token')
      .set('Referer', `${allowed}/some/page?x=1`);
    expect(res.status).toBe(200);
    registerSecret('client token', res.body.token);
    const { payload } = await jwtVerify(
      res.body.token,
      createRemoteJWKSet(new URL(`${broker.url}/.well-known/jwks.json`)),
    );
    expect(payload.origin).toBe(allowed);
  });

  it('when neither Origin nor Referer is sent, then 400 origin_required', async () => {
    expectProblem(await request(broker.url).post('/api/client-token'), 400, 'origin_required');
  });

  it.each([
    'https://evil.example.com',
    'https://apps.example.com',
    'https://evil-apps.example.com',
    'https://apps.example.com.evil.com',
    'http://app.example.com',
    'https://app.example.com:8443',
    'null',
  ])(
    'when the origin is %s, then 403 origin_not_allowed, readable by that page but for an opaque origin',
    async (origin) => {
      const res = await request(broker.url).post('/api/client-token').set('Origin', origin);
      expectProblem(res, 403, 'origin_not_allowed');
      expect(res.body.token).toBeUndefined();
      expect(res.headers['access-control-allow-origin']).toBe(origin === 'null' ? undefined : origin);
      expect(res.headers['access-control-allow-credentials']).toBeUndefined();
      expect(res.headers.vary).toMatch(/\bOrigin\b/);
    },
  );

  it('when a refused origin sends a preflight, then it is answered, so that the refusal itself can be read', async () => {
    const res = await request(broker.url)
      .options('/api/client-token')
      .set('Origin', 'https://evil.example.com')
      .set('Access-Control-Request-Method', 'POST');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://evil.example.com');
  });

  it('when the origin differs only by case and default port, then it is the same origin', async () => {
    const res = await request(broker.url)
      .post('/api/client-token')
      .set('Origin', 'HTTPS://APP.example.com:443');
    expect(res.status).toBe(200);
    registerSecret('client token', res.body.token);
  });

  it('when an allowed origin sends a preflight, then CORS allows it', async () => {
    const res = await request(broker.url)
      .options('/api/client-token')
      .set('Origin', allowed)
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'content-type');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(allowed);
    expect(res.headers.vary).toMatch(/Origin/);
  });

  it('when another method is used, then 405 with Allow', async () => {
    const res = await request(broker.url).delete('/api/client-token').set('Origin', allowed);
    expectProblem(res, 405, 'method_not_allowed');
    expect(res.headers.allow).toContain('POST');
  });
});

describe('POST /api/auth/claim', () => {
  const origin = 'https://partner.example.org';

  async function claimPayload(res: request.Response) {
    expect(res.status).toBe(200);
    registerSecret('claim token', res.body.token);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.expiration).toMatch(/^\d{2}-\d{2}-\d{4} \d{2}:\d{2}$/);
    const expiresAt = new Date(res.body.expiresAt);
    const pad = (n: number) => String(n).padStart(2, '0');
    expect(res.body.expiration).toBe(
      `${pad(expiresAt.getUTCMonth() + 1)}-${pad(expiresAt.getUTCDate())}-${expiresAt.getUTCFullYear()} ${pad(expiresAt.getUTCHours())}:${pad(expiresAt.getUTCMinutes())}`,
    );
    const { payload } = await jwtVerify(
      res.body.token,
      createRemoteJWKSet(new URL(`${broker.url}/.well-known/jwks.json`)),
    );
    return payload;
  }

  it('when the key and fields come in the query (Trefle style), then a bound token is answered', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .query({ token: broker.apiKey, origin, ip: '203.0.113.7' });
    expect(await claimPayload(res)).toMatchObject({ origin, ip: '203.0.113.7' });
  });

  it('when fields come as JSON with a Bearer key, then a token is answered', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .set('Authorization', `Bearer ${broker.apiKey}`)
      .send({ origin, ip: '2001:DB8:0:0::1' });
    expect(await claimPayload(res)).toMatchObject({ origin, ip: '2001:db8::1' });
  });

  it('when fields come as a form, then a token is answered, unbound to any IP when none is given', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .type('form')
      .send({ token: broker.apiKey, origin: `${origin}/` });
    const payload = await claimPayload(res);
    expect(payload.origin).toBe(origin);
    expect(payload.ip).toBeUndefined();
  });

  it('when an IPv4-mapped IPv6 address is claimed, then the IPv4 address is bound', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .set('Authorization', `Bearer ${broker.apiKey}`)
      .send({ origin, ip: '::ffff:198.51.100.9' });
    expect((await claimPayload(res)).ip).toBe('198.51.100.9');
  });

  it.each([
    ['no key', undefined],
    ['a wrong key', 'wrong-key-0123456789abcdef'],
  ])('when %s is sent, then 401 invalid_api_key with a Bearer challenge', async (_label, key) => {
    const req = request(broker.url).post('/api/auth/claim').send({ origin });
    if (key) req.set('Authorization', `Bearer ${key}`);
    const res = await req;
    expectProblem(res, 401, 'invalid_api_key');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it.each([['not-an-ip'], ['1.2.3'], ['999.1.1.1'], ['::ffff:999.1.1.1']])(
    'when ip is %s, then 400 invalid_request',
    async (ip) => {
      const res = await request(broker.url)
        .post('/api/auth/claim')
        .set('Authorization', `Bearer ${broker.apiKey}`)
        .send({ origin, ip });
      expectProblem(res, 400, 'invalid_request');
    },
  );

  it('when origin is missing, then 400 origin_required; when it is not an origin, then 400 invalid_request', async () => {
    const auth = { Authorization: `Bearer ${broker.apiKey}` };
    expectProblem(
      await request(broker.url).post('/api/auth/claim').set(auth).send({}),
      400,
      'origin_required',
    );
    for (const bad of [
      'javascript:alert(1)',
      'https://a.example/path',
      'app.example.com',
      'https://user:pw@a.example',
    ]) {
      expectProblem(
        await request(broker.url).post('/api/auth/claim').set(auth).send({ origin: bad }),
        400,
        'invalid_request',
      );
    }
  });

  it('when a field is repeated in the query, then 400 invalid_request rather than a crash', async () => {
    const res = await request(broker.url)
      .post(`/api/auth/claim?origin=${encodeURIComponent(origin)}&origin=https://b.example`)
      .set('Authorization', `Bearer ${broker.apiKey}`);
    expectProblem(res, 400, 'invalid_request');
  });

  it('when the body is larger than MAX_BODY_BYTES, then 413 payload_too_large', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .set('Authorization', `Bearer ${broker.apiKey}`)
      .send({ origin, padding: 'x'.repeat(20_000) });
    expectProblem(res, 413, 'payload_too_large');
  });

  it('when the JSON body is malformed, then 400 invalid_request', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .set('Authorization', `Bearer ${broker.apiKey}`)
      .set('content-type', 'application/json')
      .send('{"origin":');
    expectProblem(res, 400, 'invalid_request');
  });
});

describe('GET /api/upstream-token', () => {
  it('when the API key is valid, then the cached upstream token is answered in RFC 6749 shape', async () => {
    const res = await request(broker.url)
      .get('/api/upstream-token')
      .set('Authorization', `Bearer ${broker.apiKey}`);
    expect(res.status).toBe(200);
    registerSecret('upstream token', res.body.access_token);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({ token_type: 'Bearer', scope: broker.auth.scope });
    expect(res.body.expires_in).toBeGreaterThan(0);
    expect(decodeProtectedHeader(res.body.access_token).typ).toBe('at+jwt');
  });

  it('when the API key is missing, then 401 invalid_api_key and no upstream token', async () => {
    const res = await request(broker.url).get('/api/upstream-token');
    expectProblem(res, 401, 'invalid_api_key');
  });
});

describe('upstream token caching through the routes', () => {
  it('when 200 callers arrive on a cold cache, then the real authorization server sees exactly 1 token request, and 0 for a second wave', async () => {
    const fresh = await startBroker({ upstream: broker.auth });
    const before = broker.auth.tokenRequests();
    const wave = () =>
      Promise.all(
        Array.from({ length: 200 }, () =>
          request(fresh.url).get('/api/upstream-token').set('Authorization', `Bearer ${fresh.apiKey}`),
        ),
      );
    const first = await wave();
    expect(first.every((res) => res.status === 200)).toBe(true);
    for (const res of first) registerSecret('upstream token', res.body.access_token);
    expect(new Set(first.map((res) => res.body.access_token)).size).toBe(1);
    expect(broker.auth.tokenRequests() - before).toBe(1);
    const second = await wave();
    expect(second.every((res) => res.status === 200)).toBe(true);
    expect(broker.auth.tokenRequests() - before).toBe(1);
  });
});

describe('JWKS, health and unknown routes', () => {
  it('when the JWKS is fetched, then it holds only public keys, readable from any origin', async () => {
    const res = await request(broker.url).get('/.well-known/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    const keys = JSON.parse(res.text).keys as Record<string, unknown>[];
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(key).not.toHaveProperty('d');
      expect(key).not.toHaveProperty('k');
    }
  });

  it('when /healthz and /readyz are asked, then both answer 200', async () => {
    expect((await request(broker.url).get('/healthz')).body).toEqual({ status: 'ok' });
    const ready = await request(broker.url).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ready');
  });

  it('when a route does not exist, then 404 not_found as problem+json, with no X-Powered-By', async () => {
    const res = await request(broker.url).get('/nope');
    expectProblem(res, 404, 'not_found');
    expect(res.headers['x-powered-by']).toBeUndefined();
  });

  it('when the demo is off, then / is not served', async () => {
    expect((await request(broker.url).get('/')).status).toBe(404);
  });

  it('when a safe x-request-id is sent, then it is echoed; an unsafe one is replaced', async () => {
    const safe = await request(broker.url).get('/healthz').set('x-request-id', 'abc-123');
    expect(safe.headers['x-request-id']).toBe('abc-123');
    const unsafe = await request(broker.url).get('/healthz').set('x-request-id', 'a b\tc');
    expect(unsafe.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('request logs', () => {
  it('when requests were served, then each is logged with method, path, status and duration, and no query or headers', () => {
    const lines = broker.logs.lines().filter((line) => line.msg === 'request');
    expect(lines.length).toBeGreaterThan(10);
    const claim = lines.find((line) => line.path === '/api/auth/claim');
    expect(claim).toMatchObject({
      method: 'POST',
      status: expect.any(Number),
      durationMs: expect.any(Number),
    });
    for (const line of lines) {
      expect(Object.keys(line)).not.toContain('headers');
      expect(String(line.path)).not.toContain('?');
    }
  });
});
