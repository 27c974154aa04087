import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { type ApiServer, startFixedApi } from '../support/apiServers.js';
import { type Answer, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';

/**
 * Origin and IP binding through the real routes. Every request comes from 127.0.0.1; other callers are
 * simulated with `TRUST_PROXY=loopback` (the test is the trusted proxy) and `X-Forwarded-For`.
 */

let api: ApiServer;
const brokers: FakeUpstreamBroker[] = [];
beforeAll(async () => {
  api = await startFixedApi();
});
afterAll(async () => {
  await Promise.all(brokers.map((broker) => broker.close()));
  await api.close();
});

const allowed =
  'https://app.example.com,https://*.example.org,https://bücher.example,https://*.bücher.example';

async function broker(env: Record<string, string> = {}): Promise<FakeUpstreamBroker> {
  const started = await startBroker({
    upstream: 'fake',
    env: { ALLOWED_ORIGINS: allowed, UPSTREAM_API_URL: api.origin, ...env },
  });
  brokers.push(started);
  return started;
}

function problemCode(answer: Answer): string {
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
  return JSON.parse(answer.body).code;
}

function claimsOf(answer: Answer): Record<string, unknown> {
  expect(answer.status, answer.body).toBe(200);
  return decodeJwt(JSON.parse(answer.body).token);
}

const clientToken = (target: FakeUpstreamBroker, headers: Record<string, string>) =>
  target.request({ path: '/api/client-token', headers });

describe('origin binding through /api/client-token', () => {
  let target: FakeUpstreamBroker;
  beforeAll(async () => {
    target = await broker();
  });

  it.each([
    ['HTTPS://APP.EXAMPLE.COM:443', 'https://app.example.com'],
    ['https://App.Example.com', 'https://app.example.com'],
    ['https://app.example.com/', 'https://app.example.com'],
    ['https://a.example.org', 'https://a.example.org'],
    ['https://deep.a.example.org', 'https://deep.a.example.org'],
    ['https://xn--bcher-kva.example', 'https://xn--bcher-kva.example'],
    ['https://shop.xn--bcher-kva.example', 'https://shop.xn--bcher-kva.example'],
  ])('when Origin is %s, then the token is bound to the normalised origin %s', async (origin, expected) => {
    const claims = claimsOf(await clientToken(target, { origin }));
    expect(claims.origin).toBe(expected);
  });

  it.each([
    ['a non-default port', 'https://app.example.com:8443'],
    ['another scheme', 'http://app.example.com'],
    ['a path', 'https://app.example.com/page'],
    ['two trailing slashes', 'https://app.example.com//'],
    ['user info', 'https://app.example.com@evil.example'],
    ['a fragment posing as the domain', 'https://evil.example#.example.org'],
    ['the bare wildcard domain', 'https://example.org'],
    ['a suffix look-alike', 'https://evil-example.org'],
    ['the allowed domain as a subdomain of another', 'https://a.example.org.evil.example'],
    ['a wildcard match on another scheme', 'http://a.example.org'],
    ['a wildcard match on another port', 'https://a.example.org:8443'],
    ['a homograph (Cyrillic а) of an allowed host', 'https://xn--pp-8kc.example.com'],
    ['a literal * host', 'https://*.example.org'],
    ['a $ host under a wildcard domain', 'https://$.example.org'],
    ['Origin: null (sandboxed frame, file:, redirects)', 'null'],
  ])('when Origin has %s, then 403 origin_not_allowed', async (_name, origin) => {
    const answer = await clientToken(target, { origin });
    expect(answer.status).toBe(403);
    expect(problemCode(answer)).toBe('origin_not_allowed');
  });

  it('when Origin is null, then an allowed Referer does not rescue the request', async () => {
    const answer = await clientToken(target, { origin: 'null', referer: 'https://app.example.com/page' });
    expect(problemCode(answer)).toBe('origin_not_allowed');
  });

  it('when Origin is missing and Referer is an allowed page, then the token is bound to the Referer origin', async () => {
    const claims = claimsOf(await clientToken(target, { referer: 'https://APP.example.com:443/a/b?c=d#e' }));
    expect(claims.origin).toBe('https://app.example.com');
  });

  it('when Origin is missing and Referer is another site, then 403 origin_not_allowed', async () => {
    const answer = await clientToken(target, { referer: 'https://evil.example/?https://app.example.com' });
    expect(problemCode(answer)).toBe('origin_not_allowed');
  });

  it('when neither Origin nor Referer is sent, then 400 origin_required', async () => {
    const answer = await clientToken(target, {});
    expect(answer.status).toBe(400);
    expect(problemCode(answer)).toBe('origin_required');
  });
});

describe('origin normalisation through /api/auth/claim', () => {
  let target: FakeUpstreamBroker;
  beforeAll(async () => {
    target = await broker();
  });
  const claim = (fields: Record<string, string>) =>
    target.request({
      method: 'POST',
      path: '/api/auth/claim',
      headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(fields),
    });

  it('when the origin is spelled with case, default port and a trailing slash, then the token holds the normalised origin', async () => {
    const claims = claimsOf(await claim({ origin: 'HTTPS://App.Example.com:443/' }));
    expect(claims.origin).toBe('https://app.example.com');
  });

  it('when the origin is a Unicode host, then the token holds its punycode form, as browsers send it', async () => {
    expect(claimsOf(await claim({ origin: 'https://bücher.example' })).origin).toBe(
      'https://xn--bcher-kva.example',
    );
  });

  it.each([
    ['null', 'invalid_request'],
    ['https://app.example.com/path', 'invalid_request'],
    ['javascript:alert(1)', 'invalid_request'],
    ['https://user:pw@app.example.com', 'invalid_request'],
  ])('when the origin is %s, then 400 %s', async (origin, code) => {
    const answer = await claim({ origin });
    expect(answer.status).toBe(400);
    expect(problemCode(answer)).toBe(code);
  });

  it.each([
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['::FFFF:CB00:7109', '203.0.113.9'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1'],
  ])('when the claimed ip is %s, then the token holds the canonical %s', async (ip, expected) => {
    expect(claimsOf(await claim({ origin: 'https://app.example.com', ip })).ip).toBe(expected);
  });

  it.each(['1.2.3', '01.2.3.4', '256.1.1.1', '203.0.113.9/24', 'localhost'])(
    'when the claimed ip is %s, then 400 invalid_request',
    async (ip) => {
      const answer = await claim({ origin: 'https://app.example.com', ip });
      expect(answer.status).toBe(400);
      expect(problemCode(answer)).toBe('invalid_request');
    },
  );
});

describe('IP binding and X-Forwarded-For', () => {
  const origin = 'https://app.example.com';

  it('when TRUST_PROXY is off, then X-Forwarded-For is ignored and the token is bound to the socket address', async () => {
    const target = await broker({ TRUST_PROXY: 'false' });
    const claims = claimsOf(await clientToken(target, { origin, 'x-forwarded-for': '203.0.113.9' }));
    expect(claims.ip).toBe('127.0.0.1');
  });

  it.each([
    ['loopback', '203.0.113.9', '203.0.113.9'],
    ['loopback', '6.6.6.6, 203.0.113.9', '203.0.113.9'],
    ['loopback', '6.6.6.6, 203.0.113.9, 127.0.0.1', '203.0.113.9'],
    ['1', '6.6.6.6, 203.0.113.9', '203.0.113.9'],
    ['2', '6.6.6.6, 203.0.113.9', '6.6.6.6'],
    ['loopback, 10.0.0.0/8', '6.6.6.6, 203.0.113.9, 10.1.1.1', '203.0.113.9'],
    ['loopback, ::ffff:10.0.0.0/104', '6.6.6.6, 203.0.113.9, 10.1.1.1', '203.0.113.9'],
    ['loopback', '::ffff:203.0.113.9', '203.0.113.9'],
    ['loopback', '::FFFF:CB00:7109', '203.0.113.9'],
    ['loopback', '2001:DB8::0001', '2001:db8::1'],
    ['loopback', 'fe80::1%eth0', 'fe80::1'],
  ])(
    'when TRUST_PROXY=%s and X-Forwarded-For is "%s", then the token is bound to %s',
    async (trust, xff, expected) => {
      const target = await broker({ TRUST_PROXY: trust });
      expect(claimsOf(await clientToken(target, { origin, 'x-forwarded-for': xff })).ip).toBe(expected);
    },
  );

  it('when a trusted proxy forwards an address that is not one, then 400 invalid_request and no unbound token', async () => {
    const target = await broker({ TRUST_PROXY: 'loopback' });
    const answer = await clientToken(target, { origin, 'x-forwarded-for': 'not-an-ip' });
    expect(answer.status).toBe(400);
    expect(problemCode(answer)).toBe('invalid_request');
  });

  it('when CLIENT_TOKEN_BIND_IP=prefix, then the token holds the caller address and the prefix length', async () => {
    const target = await broker({ TRUST_PROXY: 'loopback', CLIENT_TOKEN_BIND_IP: 'prefix' });
    const v4 = claimsOf(await clientToken(target, { origin, 'x-forwarded-for': '::ffff:203.0.113.9' }));
    expect([v4.ip, v4.ip_prefix]).toEqual(['203.0.113.9', 24]);
    const v6 = claimsOf(await clientToken(target, { origin, 'x-forwarded-for': '2001:db8::1' }));
    expect([v6.ip, v6.ip_prefix]).toEqual(['2001:db8::1', 64]);
  });

  const trustEntries: [string, RegExp][] = [
    ['::ffff:10.0.0.0/8', /IPv4-mapped range/],
    ['::ffff:0:0/96', /IPv4-mapped range/],
    ['::/8', /every IPv4-mapped address/],
    ['10.0.0.0/0', /prefix length/],
    ['10.0.0.0/33', /prefix length/],
    ['2001:db8::/129', /prefix length/],
    ['10.0.0.0/255.0.0.0', /not an IP address/],
    ['true', /would trust client-written/],
  ];
  it.each(trustEntries)(
    'when TRUST_PROXY is "%s", then start-up refuses it, naming TRUST_PROXY',
    (entry, message) => {
      let error: unknown;
      try {
        loadConfig({ TRUST_PROXY: entry });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual([expect.stringMatching(/^TRUST_PROXY: /)]);
      expect((error as ConfigError).problems[0]).toMatch(message);
    },
  );

  it('when a trust entry is an IPv4-mapped address or range, then it is rewritten to the IPv4 form', () => {
    expect(
      loadConfig({ TRUST_PROXY: '::ffff:10.0.0.0/104, ::FFFF:192.168.0.1, fe80::/10' }).trustProxy,
    ).toEqual(['10.0.0.0/8', '192.168.0.1', 'fe80::/10']);
  });
});

describe('the binding is compared as it was minted, through /api/proxy', () => {
  const origin = 'https://app.example.com';
  let target: FakeUpstreamBroker;
  let token: string;
  beforeAll(async () => {
    target = await broker({ TRUST_PROXY: 'loopback' });
    const answer = await clientToken(target, { origin, 'x-forwarded-for': '203.0.113.9' });
    token = registerSecret('client token', JSON.parse(answer.body).token);
  });
  const use = (headers: Record<string, string>) =>
    target.request({ path: '/api/proxy/things', headers: { authorization: `Bearer ${token}`, ...headers } });

  it.each([
    ['the same address', origin, '203.0.113.9'],
    ['its IPv4-mapped spelling', origin, '::ffff:203.0.113.9'],
    ['its hex-mapped spelling', origin, '::ffff:cb00:7109'],
    ['the origin in another case with the default port', 'HTTPS://APP.EXAMPLE.COM:443', '203.0.113.9'],
  ])('when the token is used from %s, then it is accepted', async (_name, requestOrigin, xff) => {
    const answer = await use({ origin: requestOrigin, 'x-forwarded-for': xff });
    expect(answer.status, answer.body).toBe(200);
    expect(answer.body).toBe('{"ok":true}');
  });

  it.each([
    ['a neighbouring address', origin, '203.0.113.10', 'ip_mismatch'],
    [
      'a spoofed X-Forwarded-For entry left of the real caller',
      origin,
      '203.0.113.9, 198.51.100.7',
      'ip_mismatch',
    ],
    ['an IPv6 address', origin, '2001:db8::cb00:7109', 'ip_mismatch'],
    ['another origin', 'https://a.example.org', '203.0.113.9', 'origin_mismatch'],
    ['Origin: null', 'null', '203.0.113.9', 'origin_mismatch'],
  ])('when the token is used from %s, then 403 %s', async (_name, requestOrigin, xff, code) => {
    const answer = await use({ origin: requestOrigin, 'x-forwarded-for': xff });
    expect(answer.status).toBe(403);
    expect(problemCode(answer)).toBe(code);
    expectNoSecrets(answer.body, [...target.secrets(), token]);
  });
});
