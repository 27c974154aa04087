import { describe, expect, it } from 'vitest';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/headers.js';

const forwarded = {
  accessToken: 'upstream-access-token',
  clientIp: '203.0.113.7',
  protocol: 'https',
  host: 'app.example.com',
};

describe('upstreamRequestHeaders', () => {
  it('when the client sends credentials, cookies and hop-by-hop fields, then only end-to-end fields go up', () => {
    const headers = upstreamRequestHeaders(
      {
        host: 'broker.example.com',
        authorization: 'Bearer client-jwt',
        'x-client-token': 'client-jwt',
        cookie: 'sid=1',
        origin: 'https://app.example.com',
        referer: 'https://app.example.com/page',
        connection: 'keep-alive, X-Private-Hop',
        'x-private-hop': 'secret-ish',
        'keep-alive': 'timeout=5',
        'proxy-connection': 'keep-alive',
        te: 'trailers',
        trailer: 'x-sum',
        'transfer-encoding': 'chunked',
        upgrade: 'websocket',
        'proxy-authorization': 'Basic eDp5',
        expect: '100-continue',
        forwarded: 'for=1.2.3.4',
        'content-length': '12',
        'content-type': 'application/json',
        accept: 'application/json',
        'accept-language': 'nl',
        'x-request-id': 'abc',
      },
      forwarded,
    );
    expect(headers).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      'accept-language': 'nl',
      'x-request-id': 'abc',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'app.example.com',
      authorization: 'Bearer upstream-access-token',
    });
  });

  it('when the client sends x-forwarded-* and x-real-ip, then they are dropped: only the trusted chain, proto and host go up', () => {
    const headers = upstreamRequestHeaders(
      {
        'x-forwarded-for': '198.51.100.1',
        'x-forwarded-proto': 'gopher',
        'x-forwarded-host': 'evil.example',
        'x-real-ip': '198.51.100.2',
      },
      forwarded,
    );
    expect(headers['x-forwarded-for']).toBe('203.0.113.7');
    expect(headers['x-forwarded-proto']).toBe('https');
    expect(headers['x-forwarded-host']).toBe('app.example.com');
    expect(headers).not.toHaveProperty('x-real-ip');
  });

  it('when proxies are trusted, then x-forwarded-for is the chain they vouch for', () => {
    const headers = upstreamRequestHeaders(
      { 'x-forwarded-for': '192.0.2.66, 198.51.100.1' },
      { ...forwarded, forwardedFor: ['198.51.100.1', '10.0.0.2'] },
    );
    expect(headers['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.2');
  });

  it('when the API answers with Server and X-Powered-By, then neither reaches the client', () => {
    expect(
      downstreamResponseHeaders({
        server: 'nginx/1.2.3',
        'x-powered-by': 'PHP/5.4',
        'content-type': 'text/plain',
      }),
    ).toEqual({ 'content-type': 'text/plain' });
  });

  it('when the host is unknown, then no x-forwarded-host is sent', () => {
    expect(upstreamRequestHeaders({}, { ...forwarded, host: undefined })).not.toHaveProperty(
      'x-forwarded-host',
    );
  });
});

describe('downstreamResponseHeaders', () => {
  it('when the API sets cookies, origin-wide policies, CORS and hop-by-hop fields, then they are dropped', () => {
    const headers = downstreamResponseHeaders({
      'set-cookie': ['a=1', 'b=2'],
      'clear-site-data': '"*"',
      'alt-svc': 'h3=":443"',
      'strict-transport-security': 'max-age=63072000; includeSubDomains',
      'access-control-allow-origin': '*',
      'access-control-allow-credentials': 'true',
      connection: 'keep-alive, x-upstream-hop',
      'x-upstream-hop': '1',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      trailer: 'x-sum',
      upgrade: 'h2c',
      'proxy-authenticate': 'Basic',
      'content-type': 'application/json',
      'content-length': '2',
      'cache-control': 'max-age=60',
      etag: '"v1"',
      'www-authenticate': 'Bearer',
      vary: 'Accept',
    });
    expect(headers).toEqual({
      'content-type': 'application/json',
      'content-length': '2',
      'cache-control': 'max-age=60',
      etag: '"v1"',
      'www-authenticate': 'Bearer',
      vary: 'Accept',
    });
  });
});
