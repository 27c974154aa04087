import type { IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';
import { ath, dpopEnv, dpopToken, makeProof, proofKey } from '../support/dpopProofs.js';
import { call, type RawAnswer } from '../support/rawCall.js';

/**
 * The proxy and client-token routes are served twice: by the direct lane on `node:http` for the plain
 * targets browsers send, and by Express for the spellings only its router understands (an absolute-form
 * target, a trailing slash, another letter case). Both run the same chains, so a client must not be able to
 * tell them apart: the same status, body, headers, log line and metrics.
 */

let broker: BrokerHandle<'fake', 'fixed'>;
let token: string;

beforeAll(async () => {
  broker = await startBroker({
    upstream: 'fake',
    api: 'fixed',
    env: { RATE_LIMIT_PROXY: '1000/minute', RATE_LIMIT_CLIENT_TOKEN: '1000/minute' },
  });
  token = await broker.clientToken();
});

afterAll(async () => {
  await broker.close();
});

/** What differs between any two answers: the request id, the date, and the rate limit's count. */
const perAnswer = new Set(['x-request-id', 'date', 'ratelimit', 'connection', 'keep-alive']);

function sameHeaders(answer: RawAnswer): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(answer.headers).filter(([name]) => !perAnswer.has(name)));
}

function sameProblem(answer: RawAnswer): Record<string, unknown> {
  const { instance, ...problem } = answer.json();
  expect(instance).toBe(answer.headers['x-request-id']);
  return problem;
}

const proxyHeaders = () => ({ origin: appOrigin, authorization: `Bearer ${token}` });
const absolute = (path: string) => `${broker.url}${path}`;

describe('the direct lane and Express answer alike', () => {
  it('when the proxy is called with an absolute-form target, then it answers as for the plain one', async () => {
    const plain = await call(broker.url, '/api/proxy/items/1?x=1', { headers: proxyHeaders() });
    const express = await call(broker.url, absolute('/api/proxy/items/1?x=1'), { headers: proxyHeaders() });

    expect(plain.status).toBe(200);
    expect(express.status).toBe(200);
    expect(express.text()).toBe(plain.text());
    expect(sameHeaders(express)).toEqual(sameHeaders(plain));
    expect(plain.headers.ratelimit).toMatch(/^"proxy"; r=\d+; t=\d+$/);
    expect(express.headers.ratelimit).toMatch(/^"proxy"; r=\d+; t=\d+$/);
    // The API saw the same request target for both.
    expect(broker.api.requests.slice(-2).map((request) => request.url)).toEqual([
      '/items/1?x=1',
      '/items/1?x=1',
    ]);
  });

  it('when the mount is written in another letter case, then the plain lane serves it as Express would', async () => {
    const upper = await call(broker.url, '/API/Proxy/items', { headers: proxyHeaders() });
    const express = await call(broker.url, absolute('/API/Proxy/items'), { headers: proxyHeaders() });

    expect(upper.status).toBe(200);
    expect(sameHeaders(upper)).toEqual(sameHeaders(express));
    expect(broker.api.requests.slice(-2).map((request) => request.url)).toEqual(['/items', '/items']);
  });

  it('when the proxy refuses a request, then both lanes give the same problem, headers and log line', async () => {
    const headers = { origin: appOrigin };
    const plain = await call(broker.url, '/api/proxy/items', { headers });
    const express = await call(broker.url, absolute('/api/proxy/items'), { headers });

    expect(plain.status).toBe(401);
    expect(sameProblem(plain)).toEqual(sameProblem(express));
    expect(sameHeaders(express)).toEqual(sameHeaders(plain));
    expect(plain.headers['www-authenticate']).toBe('Bearer realm="token-broker"');
    const lines = broker.logs
      .lines()
      .filter(
        (line) =>
          line.reqId === plain.headers['x-request-id'] || line.reqId === express.headers['x-request-id'],
      )
      .filter((line) => line.msg === 'request');
    expect(lines.map(({ method, path, status }) => ({ method, path, status }))).toEqual([
      { method: 'GET', path: '/api/proxy/items', status: 401 },
      { method: 'GET', path: '/api/proxy/items', status: 401 },
    ]);
  });

  it('when a client token is asked for with a trailing slash, then Express mints it as the plain lane does', async () => {
    const headers = { origin: appOrigin };
    const plain = await call(broker.url, '/api/client-token', { method: 'POST', headers });
    const express = await call(broker.url, '/api/client-token/', { method: 'POST', headers });

    expect(plain.status).toBe(200);
    expect(express.status).toBe(200);
    expect(sameHeaders(express)).toEqual(sameHeaders(plain));
    const { token: _plainToken, expiresAt: _plainExpiry, ...plainBody } = plain.json();
    const { token: _expressToken, expiresAt: _expressExpiry, ...expressBody } = express.json();
    expect(expressBody).toEqual(plainBody);
    expect(plain.headers.ratelimit).toMatch(/^"client-token"; r=\d+; t=\d+$/);
  });

  it('when a client token is refused, then both lanes answer the same problem', async () => {
    const headers = { origin: 'https://evil.example.net' };
    const plain = await call(broker.url, '/api/client-token?upstreams=default', { method: 'POST', headers });
    const express = await call(broker.url, absolute('/api/client-token?upstreams=default'), {
      method: 'POST',
      headers,
    });

    expect(plain.status).toBe(403);
    expect(sameProblem(express)).toEqual(sameProblem(plain));
    expect(sameHeaders(express)).toEqual(sameHeaders(plain));
  });

  it('when a query holds raw JSON, then both lanes hand it to the API byte for byte', async () => {
    const target = '/api/proxy/search?q={"a":[1,2]}&x=|';
    const plain = await call(broker.url, target, { headers: proxyHeaders() });
    const express = await call(broker.url, absolute(target), { headers: proxyHeaders() });

    expect([plain.status, express.status]).toEqual([200, 200]);
    expect(broker.api.requests.slice(-2).map((request) => request.url)).toEqual([
      '/search?q={"a":[1,2]}&x=|',
      '/search?q={"a":[1,2]}&x=|',
    ]);
  });

  it('when a target holds a fragment, then Express refuses it as the proxy always did, and the API sees nothing', async () => {
    const before = broker.api.requests.length;
    const answer = await call(broker.url, '/api/proxy/items#top', { headers: proxyHeaders() });

    expect(answer.status).toBe(400);
    expect(sameProblem(answer).code).toBe('invalid_request');
    expect(broker.api.requests.length).toBe(before);
  });

  it('when a preflight or a HEAD request comes, then both lanes answer it alike', async () => {
    const preflight = {
      origin: appOrigin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    };
    const plain = await call(broker.url, '/api/proxy/items', { method: 'OPTIONS', headers: preflight });
    const express = await call(broker.url, absolute('/api/proxy/items'), {
      method: 'OPTIONS',
      headers: preflight,
    });
    expect(plain.status).toBe(204);
    expect(plain.headers['access-control-allow-methods']).toContain('POST');
    expect(sameHeaders(express)).toEqual(sameHeaders(plain));

    const plainHead = await call(broker.url, '/api/proxy/items', { method: 'HEAD', headers: proxyHeaders() });
    const expressHead = await call(broker.url, absolute('/api/proxy/items'), {
      method: 'HEAD',
      headers: proxyHeaders(),
    });
    expect(plainHead.status).toBe(200);
    expect(plainHead.body.length).toBe(0);
    expect(sameHeaders(expressHead)).toEqual(sameHeaders(plainHead));
  });

  it('when the mount is written in another letter case, then the proxy metrics count it too', async () => {
    const count = async () => {
      const { values } = await broker.broker.metrics.proxyRequests.get();
      return values
        .filter((value) => value.metricName?.endsWith('_count'))
        .reduce((sum, { value }) => sum + value, 0);
    };
    const before = await count();
    await call(broker.url, '/API/Proxy/items', { headers: proxyHeaders() });
    await call(broker.url, absolute('/api/proxy/items/'), { headers: proxyHeaders() });
    expect(await count()).toBe(before + 2);
  });

  it('when a request is for another route, then the direct lane leaves it to Express', async () => {
    const health = await call(broker.url, '/healthz');
    const introspect = await call(broker.url, '/api/client-token/introspect', { method: 'POST' });

    expect(health.status).toBe(200);
    expect(introspect.status).toBe(401);
    expect(sameProblem(introspect).code).toBe('invalid_api_key');
  });
});

describe('the per-address limit in both lanes', () => {
  it('when an address passes RATE_LIMIT_PROXY, then both lanes refuse it with 429, Retry-After and the same headers', async () => {
    const limited = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      env: { RATE_LIMIT_PROXY: '3/minute' },
    });
    const headers = { origin: appOrigin, authorization: `Bearer ${await limited.clientToken()}` };
    const allowed = [];
    for (let i = 0; i < 3; i += 1) allowed.push(await call(limited.url, '/api/proxy/items', { headers }));
    const plain = await call(limited.url, '/api/proxy/items', { headers });
    const express = await call(limited.url, `${limited.url}/api/proxy/items`, { headers });

    expect(allowed.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(allowed.map((answer) => answer.headers.ratelimit)).toEqual([
      expect.stringMatching(/^"proxy"; r=2; t=\d+$/),
      expect.stringMatching(/^"proxy"; r=1; t=\d+$/),
      expect.stringMatching(/^"proxy"; r=0; t=\d+$/),
    ]);
    expect([plain.status, express.status]).toEqual([429, 429]);
    expect(sameProblem(plain).code).toBe('rate_limited');
    expect(sameProblem(express)).toEqual(sameProblem(plain));
    expect(Number(plain.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(plain.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(Object.keys(express.headers).sort()).toEqual(Object.keys(plain.headers).sort());
    expect(limited.api.requests.length).toBe(3);
  });
});

describe('DPoP in both lanes', () => {
  it('when a DPoP-bound token is used with an absolute-form target, then the proof names that URL and is accepted', async () => {
    const bound = await startBroker({ upstream: 'fake', api: 'fixed', env: dpopEnv });
    const key = await proofKey();
    const token = await dpopToken(bound, key);
    const send = async (target: string, htu: string) =>
      call(bound.url, target, {
        headers: {
          origin: appOrigin,
          authorization: `DPoP ${token}`,
          dpop: await makeProof(key, { htm: 'GET', htu, ath: ath(token) }),
        },
      });
    const url = `${bound.url}/api/proxy/items`;

    const plain = await send('/api/proxy/items', url);
    const express = await send(url, url);
    const elsewhere = await send(url, 'http://other.example/api/proxy/items');

    expect([plain.status, express.status, elsewhere.status]).toEqual([200, 200, 401]);
    expect(sameProblem(elsewhere).code).toBe('invalid_dpop_proof');
  });
});
