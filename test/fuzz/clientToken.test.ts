import fc from 'fast-check';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
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

describe('fuzzing /api/client-token', () => {
  it(
    'when any method, query, headers and body arrive, then the answer is a token for an allowed origin or a documented problem, never a 5xx or a secret',
    async () => {
      const secrets = credential({ apiKey: target.broker.apiKey, clientToken: target.clientToken });
      const statuses = new Set<number>();
      await fc.assert(
        fc.asyncProperty(
          methods,
          queryString(secrets),
          headers(secrets),
          bodyAndType(secrets),
          async (method, query, headerSet, payload) => {
            const request = assemble(method, `/api/client-token${query}`, headerSet, payload);
            const answer = await sendAndCheck(target.broker, request);
            statuses.add(answer.status);
            if (answer.status === 200 && method !== 'HEAD') {
              const claims = decodeJwt(JSON.parse(answer.body).token as string);
              expect(['https://app.example.com', expect.stringMatching(/\.example\.org$/)]).toContainEqual(
                claims.origin,
              );
              expect(claims.ip).toBe('127.0.0.1');
              expect(answer.headers['cache-control']).toBe('no-store');
            }
          },
        ),
        { numRuns },
      );
      // The inputs reach every outcome, not just the first check.
      expect([...statuses]).toEqual(expect.arrayContaining([200, 204, 400, 403, 405]));
      await expectHealthy(target.broker);
    },
    fuzzTimeoutMs,
  );
});
