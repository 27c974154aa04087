import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createCallerReader } from '../../../src/caller/requestCaller.js';
import { systemClock } from '../../../src/clock.js';
import { BrokerError } from '../../../src/errors.js';
import type { Handler } from '../../../src/http/dispatch/handler.js';
import { createRateLimits, type RateLimitsOptions } from '../../../src/http/middleware/rateLimits.js';
import { sendProblem } from '../../../src/http/problem.js';
import { freePort } from '../../support/freePort.js';
import { serveHandlers } from '../../support/handlerServer.js';
import { captureLogs } from '../../support/logs.js';
import { call } from '../../support/rawCall.js';

const minute = { limit: 3, windowMs: 60_000 };
const caller = createCallerReader(false);
const ok: Handler = (_req, res) => {
  res.end('ok');
};
/** Answers 401 when the request says so, as an API-key route does for a wrong key. */
const keyCheck: Handler = (req, res) => {
  if (req.headers['x-key'] === 'wrong') sendProblem(res, new BrokerError('invalid_api_key'));
  else res.end('ok');
};

function limits(rules: Partial<RateLimitsOptions['rules']>, redis?: RateLimitsOptions['redis']) {
  const logs = captureLogs();
  const all = {
    clientToken: undefined,
    claim: undefined,
    apiKeyFailures: undefined,
    proxy: undefined,
    challenge: undefined,
  };
  return {
    logs,
    ...createRateLimits({
      rules: { ...all, ...rules },
      maxAddresses: 100_000,
      logger: logs.logger,
      clock: systemClock,
      caller,
      redis,
    }),
  };
}

describe('the per-request limiter', () => {
  it('when an address sends requests, then each answer says how many remain, and the one past the limit is 429', async () => {
    const { proxy, logs } = limits({ proxy: minute });
    const url = await serveHandlers([proxy, ok], logs.logger);
    const answers = [];
    for (let i = 0; i < 4; i += 1) answers.push(await call(url, '/'));

    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 429]);
    expect(answers.map((answer) => answer.headers.ratelimit)).toEqual([
      expect.stringMatching(/^"proxy"; r=2; t=(60|59)$/),
      expect.stringMatching(/^"proxy"; r=1; t=\d+$/),
      expect.stringMatching(/^"proxy"; r=0; t=\d+$/),
      expect.stringMatching(/^"proxy"; r=0; t=\d+$/),
    ]);
    expect(answers[0]?.headers['ratelimit-policy']).toBe('"proxy"; q=3; w=60');
    const refused = answers[3];
    expect(refused?.json()).toMatchObject({
      code: 'rate_limited',
      detail: expect.stringContaining('try again later'),
    });
    expect(Number(refused?.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(refused?.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('when a limit is off, then its middleware passes everything and writes no header', async () => {
    const { clientToken, logs } = limits({});
    const url = await serveHandlers([clientToken, ok], logs.logger);
    for (let i = 0; i < 5; i += 1) {
      const answer = await call(url, '/');
      expect(answer.status).toBe(200);
      expect(answer.headers.ratelimit).toBeUndefined();
    }
  });

  it('when two families are limited, then each counts on its own', async () => {
    const { clientToken, claim, logs } = limits({
      clientToken: minute,
      claim: { limit: 1, windowMs: 60_000 },
    });
    const tokens = await serveHandlers([clientToken, ok], logs.logger);
    const claims = await serveHandlers([claim, ok], logs.logger);
    expect((await call(claims, '/')).status).toBe(200);
    expect((await call(claims, '/')).status).toBe(429);
    expect((await call(tokens, '/')).headers.ratelimit).toMatch(/^"client-token"; r=2;/);
  });

  it('when another layer already answered before the count came back, then no header is added to it', async () => {
    const { proxy, logs } = limits({ proxy: minute });
    const early: Handler = (_req, res, next) => {
      res.end('answered first');
      next();
    };
    const url = await serveHandlers([early, proxy, () => {}], logs.logger);
    const answer = await call(url, '/');
    expect(answer.text()).toBe('answered first');
    expect(answer.headers.ratelimit).toBeUndefined();
  });
});

describe('the API-key failure limiter', () => {
  it('when an address fails with wrong keys up to the limit, then its next request is refused, even with a good key', async () => {
    const { apiKeyFailures, logs } = limits({ apiKeyFailures: minute });
    const url = await serveHandlers([apiKeyFailures, keyCheck], logs.logger);
    const failures = [];
    for (let i = 0; i < 3; i += 1)
      failures.push((await call(url, '/', { headers: { 'x-key': 'wrong' } })).status);
    expect(failures).toEqual([401, 401, 401]);
    const refused = await call(url, '/');
    expect(refused.status).toBe(429);
    expect(refused.json().detail).toMatch(/failed API-key attempts/);
    expect(refused.headers.ratelimit).toMatch(/^"api-key-failures"; r=0; t=\d+$/);
  });

  it('when requests succeed, then they are not counted, however many', async () => {
    const { apiKeyFailures, logs } = limits({ apiKeyFailures: { limit: 1, windowMs: 60_000 } });
    const url = await serveHandlers([apiKeyFailures, keyCheck], logs.logger);
    for (let i = 0; i < 5; i += 1) {
      const answer = await call(url, '/');
      expect(answer.status).toBe(200);
      expect(answer.headers.ratelimit).toBeUndefined();
    }
  });
});

describe('a limiter whose Redis is unreachable', () => {
  it('when the counter cannot be reached, then the request passes uncounted and the failure is logged', async () => {
    const client = new Redis({
      port: await freePort(),
      host: '127.0.0.1',
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    // The refused connection is what this test is about; the limiter's own log line reports it.
    client.on('error', () => {});
    const { proxy, logs } = limits(
      { proxy: { limit: 1, windowMs: 60_000 } },
      {
        client,
        prefix: 'rate-limits-test:',
        status: () => 'ok',
      },
    );
    const url = await serveHandlers([proxy, ok], logs.logger);
    try {
      const answers = [await call(url, '/'), await call(url, '/')];
      expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
      expect(answers[0]?.headers.ratelimit).toBeUndefined();
      expect(logs.lines()).toContainEqual(
        expect.objectContaining({
          level: 'warn',
          component: 'rateLimits',
          msg: 'rate limiter store unreachable; allowing the request uncounted',
        }),
      );
    } finally {
      client.disconnect();
    }
  });
});
