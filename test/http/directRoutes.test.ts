import type { IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';
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

  it('when a request is for another route, then the direct lane leaves it to Express', async () => {
    const health = await call(broker.url, '/healthz');
    const introspect = await call(broker.url, '/api/client-token/introspect', { method: 'POST' });

    expect(health.status).toBe(200);
    expect(introspect.status).toBe(401);
    expect(sameProblem(introspect).code).toBe('invalid_api_key');
  });
});
