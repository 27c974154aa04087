import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { errorCatalog } from '../../src/errors.js';
import { type Answer, type FakeUpstreamBroker, fastPolicy, startBroker } from '../support/broker.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { type Behaviour, hang, issueToken, type RecordedRequest, reply } from '../support/oauthServers.js';
import { sleep } from '../support/waiting.js';

/** UPSTREAM_TIMEOUT_MS in the harness: no caller may wait much longer than one attempt. */
const timeoutMs = 400;
/** How long each fault is kept up while callers keep asking. */
const faultWindowMs = 900;
/**
 * Upstream attempts the backoff and breaker allow in the window: `breakerThreshold` quick failures, then one
 * probe per `breakerOpenMs`, plus one for the attempt in flight when the window closes.
 */
const maxAttempts =
  (fastPolicy.breakerThreshold ?? 0) + Math.ceil(faultWindowMs / (fastPolicy.breakerOpenMs ?? 1)) + 1;

/** Started inside a test, so the harness closes it when the test ends. */
const start = () => startBroker({ upstream: 'fake' });

const tokenRequests = (broker: FakeUpstreamBroker) => broker.upstream.requests.length;

function upstreamToken(broker: FakeUpstreamBroker): Promise<Answer> {
  return broker.request({
    path: '/api/upstream-token',
    headers: { authorization: `Bearer ${broker.apiKey}` },
  });
}

/** Checks an answer given while the upstream is sick: a documented problem, fast, with nothing secret. */
function expectRefusal(
  broker: FakeUpstreamBroker,
  answer: Answer,
  code: 'upstream_unavailable' | 'upstream_rejected',
) {
  expect(answer.status).toBe(errorCatalog[code].status);
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(answer.body)).toMatchObject({ code, status: errorCatalog[code].status });
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.ms).toBeLessThan(timeoutMs + 400);
  if (code === 'upstream_unavailable') {
    const retryAfter = Number(answer.headers['retry-after']);
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2).toBe(true);
  }
  expectNoSecrets(answer.body, broker.secrets(), `${code} body`);
  expectNoSecrets(JSON.stringify(answer.headers), broker.secrets(), `${code} headers`);
}

/**
 * Keeps asking for the upstream token (a burst of concurrent callers, then one every 20 ms) while the
 * fault lasts; returns every answer.
 */
async function hammer(broker: FakeUpstreamBroker): Promise<Answer[]> {
  const started = performance.now();
  const answers = await Promise.all(Array.from({ length: 5 }, () => upstreamToken(broker)));
  while (performance.now() - started < faultWindowMs) {
    answers.push(await upstreamToken(broker));
    await sleep(20);
  }
  return answers;
}

/** Heals the upstream and measures how long until a caller gets a token again. */
async function recoveryMs(broker: FakeUpstreamBroker): Promise<number> {
  broker.upstream.setBehaviour(issueToken(broker.issued));
  const healed = performance.now();
  for (;;) {
    const answer = await upstreamToken(broker);
    if (answer.status === 200) {
      expect(JSON.parse(answer.body).access_token).toBe(broker.issued.at(-1));
      return performance.now() - healed;
    }
    expect([502, 503]).toContain(answer.status);
    await sleep(20);
  }
}

/** Sends a partial JSON body, then cuts the TCP connection. */
const resetMidBody: Behaviour = (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': '200' });
  res.write('{"access_token":"partial');
  setTimeout(() => res.socket?.destroy(), 20);
};

/** Sends headers, then one space every 50 ms for as long as the connection lives. */
const dripForever: Behaviour = (_req, res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  const timer = setInterval(() => res.write(' '), 50);
  res.on('close', () => clearInterval(timer));
};

const unavailableFaults: { name: string; behaviour: Behaviour; retryAfterSeconds?: number }[] = [
  { name: 'the token endpoint never answers (slow beyond the timeout)', behaviour: hang },
  {
    name: 'the token endpoint answers 500',
    behaviour: (_req, res) => reply(res, 500, 'Internal Server Error'),
  },
  {
    name: 'the token endpoint answers 503 with Retry-After',
    behaviour: (_req, res) => reply(res, 503, 'busy', { 'retry-after': '1' }),
    retryAfterSeconds: 1,
  },
  {
    name: 'the token endpoint answers 429 with Retry-After',
    behaviour: (_req, res) => reply(res, 429, { error: 'slow_down' }, { 'retry-after': '1' }),
    retryAfterSeconds: 1,
  },
  {
    name: 'the token endpoint answers 200 with invalid JSON',
    behaviour: (_req, res) => reply(res, 200, '{"access_token": "ab'),
  },
  {
    name: 'the token endpoint answers 200 without access_token',
    behaviour: (_req, res) => reply(res, 200, { token_type: 'Bearer', expires_in: 3600 }),
  },
  { name: 'the connection is reset mid-body', behaviour: resetMidBody },
  { name: 'the body drips forever', behaviour: dripForever },
];

describe('upstream token endpoint faults, through /api/upstream-token and /readyz', () => {
  for (const fault of unavailableFaults) {
    it(`when ${fault.name}, then callers get a prompt 503 upstream_unavailable, the upstream is not hammered, and service resumes once it heals`, async () => {
      const broker = await start();
      broker.upstream.setBehaviour(fault.behaviour);

      const answers = await hammer(broker);
      for (const answer of answers) expectRefusal(broker, answer, 'upstream_unavailable');
      const attempts = tokenRequests(broker);
      expect(attempts).toBeGreaterThanOrEqual(1);
      // Retry-After is honoured: no second attempt before it has passed.
      const bound = fault.retryAfterSeconds
        ? Math.ceil(faultWindowMs / (fault.retryAfterSeconds * 1000))
        : maxAttempts;
      expect(attempts).toBeLessThanOrEqual(bound);
      expect(answers.length).toBeGreaterThan(attempts);

      const ready = await broker.request({ path: '/readyz' });
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body)).toEqual({
        status: 'not_ready',
        upstream: { token: 'unavailable', code: 'upstream_unavailable' },
        upstreams: { default: { token: 'unavailable', code: 'upstream_unavailable' } },
      });
      expect((await broker.request({ path: '/healthz' })).status).toBe(200);

      const recovery = await recoveryMs(broker);
      expect(recovery).toBeLessThan((fault.retryAfterSeconds ?? 0) * 1000 + 1000);
      expect((await broker.request({ path: '/readyz' })).status).toBe(200);
      expect(
        broker.logs
          .lines()
          .some((line) => line.level === 'warn' && /callers get upstream_unavailable/.test(String(line.msg))),
      ).toBe(true);
    });
  }

  it('when the token endpoint answers invalid_client, then callers get 502 upstream_rejected, it is logged at error level once, and the broker does not retry in a tight loop', async () => {
    const broker = await start();
    broker.upstream.setBehaviour((_req, res) =>
      reply(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' }),
    );

    const answers = await hammer(broker);
    for (const answer of answers) expectRefusal(broker, answer, 'upstream_rejected');
    expect(tokenRequests(broker)).toBeLessThanOrEqual(maxAttempts);
    expect(answers.length).toBeGreaterThan(tokenRequests(broker));

    const ready = await broker.request({ path: '/readyz' });
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body).upstream.code).toBe('upstream_rejected');
    const errors = broker.logs.lines().filter((line) => line.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ error: 'invalid_client', httpStatus: 401 });

    expect(await recoveryMs(broker)).toBeLessThan(1000);
  });

  it('when the token URL answers 404, then it is a configuration error: 502 upstream_rejected, one error line naming the URL without credentials', async () => {
    const broker = await start();
    broker.upstream.setBehaviour((_req, res) =>
      reply(res, 404, '<h1>Not Found</h1>', { 'content-type': 'text/html' }),
    );

    const answers = await hammer(broker);
    for (const answer of answers) expectRefusal(broker, answer, 'upstream_rejected');
    expect(tokenRequests(broker)).toBeLessThanOrEqual(maxAttempts);
    const errors = broker.logs.lines().filter((line) => line.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      error: 'http_404',
      httpStatus: 404,
      description: `no token endpoint at ${broker.upstream.tokenUrl}; check its URL (UPSTREAM_TOKEN_URL, or the issuer's metadata)`,
    });
  });

  const lifetimes: { name: string; expiresIn: unknown; expected: (seconds: number) => boolean }[] = [
    { name: 'negative', expiresIn: -3600, expected: (s) => s > 290 && s <= 300 },
    { name: 'zero', expiresIn: 0, expected: (s) => s > 290 && s <= 300 },
    { name: 'a non-numeric string', expiresIn: 'soon', expected: (s) => s > 290 && s <= 300 },
    { name: 'a numeric string', expiresIn: '3600', expected: (s) => s > 3590 && s <= 3600 },
    { name: 'huge', expiresIn: 1e15, expected: (s) => s > 364 * 86_400 && s <= 365 * 86_400 },
  ];
  for (const lifetime of lifetimes) {
    it(`when expires_in is ${lifetime.name}, then the token is served with a sane lifetime and fetched only once`, async () => {
      const broker = await start();
      broker.upstream.setBehaviour(issueToken(broker.issued, { expires_in: lifetime.expiresIn }));
      const answers = await Promise.all(Array.from({ length: 10 }, () => upstreamToken(broker)));
      for (const answer of answers) {
        expect(answer.status).toBe(200);
        const body = JSON.parse(answer.body);
        expect(body.access_token).toBe(broker.issued[0]);
        expect(lifetime.expected(body.expires_in), `expires_in ${body.expires_in}`).toBe(true);
      }
      expect((await broker.request({ path: '/readyz' })).status).toBe(200);
      expect(tokenRequests(broker)).toBe(1);
    });
  }

  it('when the refresh token is refused with invalid_grant, then the broker falls back to client credentials and callers never see an error', async () => {
    const broker = await start();
    const grantOf = (req: RecordedRequest) => new URLSearchParams(req.body).get('grant_type');
    broker.upstream.setBehaviour((req, res) => {
      if (grantOf(req) === 'refresh_token') {
        return reply(res, 400, { error: 'invalid_grant', error_description: 'refresh token expired' });
      }
      const token = registerSecret(
        'fake upstream access token',
        `upstream-at-${randomBytes(18).toString('base64url')}`,
      );
      const refresh = registerSecret(
        'fake upstream refresh token',
        `upstream-rt-${randomBytes(18).toString('base64url')}`,
      );
      broker.issued.push(token, refresh);
      return reply(res, 200, { access_token: token, refresh_token: refresh, expires_in: 0.3 });
    });

    const statuses: number[] = [];
    const started = performance.now();
    while (performance.now() - started < 700) {
      statuses.push((await upstreamToken(broker)).status);
      await sleep(20);
    }
    expect(new Set(statuses)).toEqual(new Set([200]));
    const grants = broker.upstream.requests.map(grantOf);
    expect(grants[0]).toBe('client_credentials');
    const refused = grants.indexOf('refresh_token');
    expect(refused).toBeGreaterThan(0);
    expect(grants[refused + 1]).toBe('client_credentials');
    // Each 300 ms lifetime costs one refresh attempt and one client credentials grant, not a loop.
    expect(grants.length).toBeLessThanOrEqual(2 * Math.ceil(700 / 270) + 1);
    expect(
      broker.logs.lines().some((line) => /falling back to client credentials/.test(String(line.msg))),
    ).toBe(true);
  });
});
