import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { reply } from '../support/oauthServers.js';
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
  sendAndCheck,
  useFuzzTarget,
} from './requests.js';

const target = useFuzzTarget();

/** The upstream token may appear only in a 200 from the one route whose job is to hand it out. */
const upstreamTokenMayHold = (path: string) => (answer: { status: number }) =>
  path.startsWith('/api/upstream-token') && answer.status === 200 ? target.broker.issued : [];

/** RFC 7662/7009 requests: a `token` parameter, as a form or as JSON, holding any credential. */
const tokenParameter = (secrets: fc.Arbitrary<string>) =>
  fc.tuple(secrets, fc.boolean()).map(([token, asJson]) =>
    asJson
      ? { body: JSON.stringify({ token }), type: 'application/json' }
      : {
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
          type: 'application/x-www-form-urlencoded',
        },
  );

function routeProperty(path: string, options: { allow503?: boolean; post?: boolean } = {}) {
  const secrets = credential({ apiKey: target.broker.apiKey, clientToken: target.clientToken });
  const statuses = new Set<number>();
  const method = options.post
    ? fc.oneof({ weight: 4, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: methods })
    : methods;
  const payload = options.post
    ? fc.oneof(bodyAndType(secrets), tokenParameter(secrets))
    : bodyAndType(secrets);
  const property = fc.asyncProperty(
    method,
    queryString(secrets),
    headers(secrets),
    payload,
    async (method, query, headerSet, payload) => {
      const request = assemble(method, `${path}${query}`, headerSet, payload);
      const answer = await sendAndCheck(target.broker, request, {
        ...options,
        mayHold: upstreamTokenMayHold(path),
      });
      // OPTIONS gets Express's automatic `Allow` answer (200, no token); the route's own answers count.
      if (method !== 'OPTIONS') statuses.add(answer.status);
    },
  );
  return { property, statuses };
}

describe('fuzzing the backend routes', () => {
  it(
    'when /api/upstream-token gets any input, then it answers the token to the key holder or a documented problem',
    async () => {
      const { property, statuses } = routeProperty('/api/upstream-token');
      await fc.assert(property, { numRuns });
      expect([...statuses]).toEqual(expect.arrayContaining([200, 401, 404]));
      await expectHealthy(target.broker);
    },
    fuzzTimeoutMs,
  );

  it.each(['/api/client-token/introspect', '/api/client-token/revoke'])(
    'when %s gets any input, then the answer is RFC 7662/7009-shaped or a documented problem',
    async (path) => {
      const { property, statuses } = routeProperty(path, { post: true });
      await fc.assert(property, { numRuns });
      expect([...statuses]).toEqual(expect.arrayContaining([200, 400, 401]));
      await expectHealthy(target.broker);
    },
    fuzzTimeoutMs,
  );

  it(
    'when the token endpoint is down, then /api/upstream-token answers only 503 upstream_unavailable (or 4xx) and leaks nothing',
    async () => {
      const { broker } = target;
      await broker.broker.upstreams.list[0]?.credentials.invalidate(broker.issued.at(-1) ?? '');
      broker.upstream.setBehaviour((_req, res) => reply(res, 500, { error: 'server_error' }));
      const { property, statuses } = routeProperty('/api/upstream-token', { allow503: true });
      await fc.assert(property, { numRuns: Math.min(numRuns, 300) });
      expect(statuses.has(503)).toBe(true);
      expect(statuses.has(200)).toBe(false);
      await expectHealthy(broker);
    },
    fuzzTimeoutMs,
  );
});
