import fc from 'fast-check';
import { decodeJwt } from 'jose';
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
  sendAndCheck,
  useFuzzTarget,
} from './requests.js';

const target = useFuzzTarget();

/** Claim fields as a backend sends them, valid or not, for JSON, form and query alike. */
const claimFields = (secrets: fc.Arbitrary<string>) =>
  fc.record(
    {
      token: fc.oneof(
        secrets,
        fc.string({ maxLength: 30 }),
        fc.integer(),
        fc.array(fc.string(), { maxLength: 2 }),
      ),
      origin: fc.oneof(
        fc.constantFrom(appOrigin, 'HTTPS://App.Example.com:443/', 'null', 'https://a.example.org/x'),
        fc.webUrl(),
        fc.string({ maxLength: 40 }),
      ),
      ip: fc.oneof(
        fc.ipV4(),
        fc.ipV6(),
        fc.constantFrom('::ffff:1.2.3.4', 'fe80::1%eth0', '1.2.3', '01.2.3.4'),
        fc.string({ maxLength: 70 }),
      ),
    },
    { requiredKeys: [] },
  );

describe('fuzzing /api/auth/claim', () => {
  it(
    'when any method, query, headers and body arrive, then the answer is a bound token or a documented problem, never a 5xx or a secret',
    async () => {
      const secrets = credential({ apiKey: target.broker.apiKey, clientToken: target.clientToken });
      const statuses = new Set<number>();
      const payload = fc.oneof(
        bodyAndType(secrets),
        claimFields(secrets).map((fields) => ({ body: JSON.stringify(fields), type: 'application/json' })),
        claimFields(secrets).map((fields) => ({
          body: new URLSearchParams(Object.entries(fields).map(([k, v]) => [k, String(v)])).toString(),
          type: 'application/x-www-form-urlencoded',
        })),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.oneof({ weight: 4, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: methods }),
          queryString(secrets),
          headers(secrets),
          payload,
          async (method, query, headerSet, body) => {
            const request = assemble(method, `/api/auth/claim${query}`, headerSet, body);
            const answer = await sendAndCheck(target.broker, request);
            statuses.add(answer.status);
            // OPTIONS gets Express's automatic `Allow` answer; only a POST can carry a token.
            if (answer.status === 200 && method === 'POST') {
              const claims = decodeJwt(JSON.parse(answer.body).token as string);
              expect(String(claims.origin)).toMatch(/^https?:\/\/[^/]+$/);
              expect(answer.headers['cache-control']).toBe('no-store');
            }
          },
        ),
        { numRuns },
      );
      expect([...statuses]).toEqual(expect.arrayContaining([200, 400, 401, 404]));
      await expectHealthy(target.broker);
    },
    fuzzTimeoutMs,
  );
});
