import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { appOrigin } from '../support/broker.js';
import {
  assemble,
  bodyAndType,
  credential,
  expectHealthy,
  fuzzTimeoutMs,
  headers,
  methods,
  numRuns,
  queryString,
  rawPathSuffix,
  sendAndCheck,
  useFuzzTarget,
} from './requests.js';

const target = useFuzzTarget();

/** Paths under the proxy prefix, including traversal and encoding tricks aimed at leaving the API base. */
const proxyPath = fc.oneof(
  fc.constantFrom(
    '/api/proxy/things',
    '/api/proxy/',
    '/api/proxy',
    '/api/proxy/../../admin',
    '/api/proxy/%2e%2e/%2e%2e/x',
    '/api/proxy//evil.example/x',
    '/api/proxy/a%2fb',
    '/api/proxy/%00',
  ),
  rawPathSuffix.map((suffix) => `/api/proxy/${suffix}`),
);

describe('fuzzing /api/proxy/*', () => {
  it(
    'when any method, path, headers, token and body arrive, then the API answer or a documented problem comes back, never a 5xx or a secret',
    async () => {
      const secrets = credential({ apiKey: target.broker.apiKey, clientToken: target.clientToken });
      const statuses = new Set<number>();
      // A browser-like request with the valid token half of the time, so the forwarder itself is reached.
      const browser = fc.record({
        origin: fc.constant(appOrigin),
        authorization: fc.constant(`Bearer ${target.clientToken}`),
      });
      await fc.assert(
        fc.asyncProperty(
          methods,
          proxyPath,
          headers(secrets),
          fc.option(browser, { nil: undefined }),
          bodyAndType(secrets),
          async (method, path, headerSet, valid, payload) => {
            const request = assemble(method, path, { ...headerSet, ...valid }, payload);
            const answer = await sendAndCheck(target.broker, request);
            statuses.add(answer.status);
            if (answer.status === 200 && method !== 'HEAD' && method !== 'OPTIONS')
              expect(answer.body).toBe('{"ok":true}');
          },
        ),
        { numRuns },
      );
      expect([...statuses]).toEqual(expect.arrayContaining([200, 401, 403]));
      await expectHealthy(target.broker);
    },
    fuzzTimeoutMs,
  );
});

describe('fuzzing the public routes and unknown paths', () => {
  const publicPaths = [
    '/healthz',
    '/readyz',
    '/.well-known/jwks.json',
    '/client.js',
    '/client.d.ts',
    '/metrics',
    '/openapi.json',
    '/',
    '/index.html',
    '/../package.json',
    '/%2e%2e/.env',
    '/api',
    '/api/',
  ];
  it(
    'when any method, path, query and headers arrive, then the answer is the resource or a documented problem, never a 5xx or a secret',
    async () => {
      const secrets = credential({ apiKey: target.broker.apiKey, clientToken: target.clientToken });
      const statuses = new Set<number>();
      await fc.assert(
        fc.asyncProperty(
          methods,
          fc.oneof(
            fc.constantFrom(...publicPaths),
            rawPathSuffix.map((suffix) => `/${suffix}`),
          ),
          queryString(secrets),
          headers(secrets),
          bodyAndType(secrets),
          async (method, path, query, headerSet, payload) => {
            const request = assemble(method, `${path.split('?')[0]}${query}`, headerSet, payload);
            const answer = await sendAndCheck(target.broker, request);
            statuses.add(answer.status);
            expect(answer.body).not.toMatch(/"dependencies"|UPSTREAM_CLIENT_SECRET=|at .*\.ts:\d+/);
          },
        ),
        { numRuns },
      );
      expect([...statuses]).toEqual(expect.arrayContaining([200, 404]));
      await expectHealthy(target.broker);
    },
    fuzzTimeoutMs,
  );
});
