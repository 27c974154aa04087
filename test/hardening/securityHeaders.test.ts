import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Answer, type FakeUpstreamBroker, startBroker } from '../support/broker.js';

let target: FakeUpstreamBroker;
let clientToken: string;
beforeAll(async () => {
  target = await startBroker({ upstream: 'fake' });
  clientToken = await target.clientToken();
});
afterAll(() => target.close());

const bearer = () => ({ authorization: `Bearer ${target.apiKey}` });
const form = { 'content-type': 'application/x-www-form-urlencoded' };

/** Every answer on the API routes, successful or not. */
const answers: [string, () => Promise<Answer>][] = [
  [
    'a client token',
    () => target.request({ path: '/api/client-token', headers: { origin: 'https://app.example.com' } }),
  ],
  [
    'a claimed token',
    () =>
      target.request({
        method: 'POST',
        path: '/api/auth/claim',
        headers: { ...bearer(), ...form },
        body: 'origin=https://app.example.com',
      }),
  ],
  ['the upstream token', () => target.request({ path: '/api/upstream-token', headers: bearer() })],
  [
    'an introspection',
    () =>
      target.request({
        method: 'POST',
        path: '/api/client-token/introspect',
        headers: { ...bearer(), ...form },
        body: new URLSearchParams({ token: clientToken }).toString(),
      }),
  ],
  ['a 400 problem', () => target.request({ path: '/api/client-token' })],
  ['a 401 problem', () => target.request({ path: '/api/upstream-token' })],
  [
    'a 403 problem',
    () => target.request({ path: '/api/client-token', headers: { origin: 'https://evil.example' } }),
  ],
  ['a 404 problem', () => target.request({ path: '/api/nothing-here' })],
  [
    'a 405 problem',
    () =>
      target.request({
        method: 'DELETE',
        path: '/api/client-token',
        headers: { origin: 'https://app.example.com' },
      }),
  ],
  [
    'a 413 problem',
    () =>
      target.request({
        method: 'POST',
        path: '/api/auth/claim',
        headers: { ...bearer(), 'content-type': 'application/json' },
        body: JSON.stringify({ origin: 'x'.repeat(40_000) }),
      }),
  ],
];

describe('security headers on the JSON API', () => {
  it.each(answers)(
    'when the broker answers %s, then it sends the JSON API security headers and forbids storing it',
    async (_name, send) => {
      const answer = await send();
      const headers = answer.headers;
      expect(headers['x-powered-by']).toBeUndefined();
      expect(headers['x-content-type-options']).toBe('nosniff');
      expect(String(headers['content-security-policy'])).toMatch(/default-src 'self'/);
      expect(String(headers['content-security-policy'])).toMatch(/frame-ancestors 'none'/);
      expect(String(headers['content-security-policy'])).toMatch(/object-src 'none'/);
      expect(headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(headers['referrer-policy']).toBe('no-referrer');
      expect(headers['cross-origin-resource-policy']).toBe('same-origin');
      expect(headers['strict-transport-security']).toMatch(/max-age=\d+/);
      expect(headers['cache-control']).toBe('no-store');
      expect(String(headers['content-type'])).toMatch(
        answer.status >= 400 ? /^application\/problem\+json/ : /^application\/json/,
      );
    },
  );

  it('when a client token is answered, then caches are told it varies by Origin and must not be kept', async () => {
    const answer = await answers[0]?.[1]();
    expect(answer?.status).toBe(200);
    expect(String(answer?.headers.vary)).toMatch(/Origin/i);
    expect(answer?.headers.pragma).toBe('no-cache');
  });

  it('when the public keys are fetched, then any origin may read them and caching is allowed briefly', async () => {
    const answer = await target.request({ path: '/.well-known/jwks.json' });
    expect(answer.headers['x-powered-by']).toBeUndefined();
    expect(answer.headers['access-control-allow-origin']).toBe('*');
    expect(answer.headers['cross-origin-resource-policy']).toBe('cross-origin');
    expect(answer.headers['cache-control']).toMatch(/^public, max-age=\d+$/);
  });
});
