import { afterAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { type ApiServer, startFixedApi } from '../support/apiServers.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { issueToken, reply } from '../support/oauthServers.js';

const iso = (ms: number) => new Date(ms).toISOString();

describe('/readyz?verbose through an upstream outage and its recovery', () => {
  let api: ApiServer | undefined;
  afterAll(async () => {
    await api?.close();
  });

  it('when the token endpoint fails, recovers and the API goes down, then each field says why at every step', async () => {
    const clock = createManualClock(Date.now());
    api = await startFixedApi();
    const broker = await startBroker({ upstream: 'fake', api, clock });
    const verbose = async () => {
      const answer = await broker.request({ path: '/readyz?verbose' });
      return { status: answer.status, body: JSON.parse(answer.body) };
    };
    const proxied = async (token: string) =>
      (
        await broker.request({
          path: '/api/proxy/things',
          headers: { origin: appOrigin, authorization: `Bearer ${token}` },
        })
      ).status;

    // Healthy, before the API was ever called: the token is held, each upstream is reported once.
    expect(await verbose()).toEqual({
      status: 200,
      body: {
        status: 'ready',
        upstreams: { default: { token: 'held', expiresIn: 3600, breaker: 'closed' } },
      },
    });
    const clientToken = await broker.clientToken();
    const calledAt = Date.now();
    expect(await proxied(clientToken)).toBe(200);
    const afterCall = (await verbose()).body.upstreams.default;
    expect(afterCall.api).toEqual({ answered: true, status: 200, at: expect.any(String) });
    expect(Math.abs(Date.parse(afterCall.api.at) - calledAt)).toBeLessThan(5_000);

    // The token endpoint fails and the held token expires: the first failure, then backoff.
    broker.upstream.setBehaviour((_req, res) => reply(res, 503, {}));
    clock.advance(3_601_000);
    const failedAt = clock.now();
    const down = await verbose();
    expect(down.status).toBe(503);
    const { nextAttemptIn, ...firstFailure } = down.body.upstreams.default;
    expect(firstFailure).toEqual({
      token: 'unavailable',
      code: 'upstream_unavailable',
      breaker: 'closed',
      lastError: { error: 'http_503', at: iso(failedAt) },
      api: afterCall.api,
    });
    // A jittered backoff below 50 ms may round to "now", and then the field is absent.
    expect([undefined, 1]).toContain(nextAttemptIn);

    // Failures go on until the breaker opens: then the next probe is a whole pause away and readiness
    // checks do not reach the token endpoint meanwhile.
    let opened: Record<string, unknown> | undefined;
    for (let attempt = 0; attempt < 10 && opened === undefined; attempt += 1) {
      clock.advance(250);
      const { body } = await verbose();
      if (body.upstreams.default.breaker === 'open') opened = body.upstreams.default;
    }
    expect(opened).toMatchObject({
      token: 'unavailable',
      code: 'upstream_unavailable',
      nextAttemptIn: 1,
      lastError: { error: 'http_503', at: iso(clock.now()) },
    });
    const requestsWhileOpen = broker.upstream.requests.length;
    clock.advance(100);
    expect((await verbose()).body.upstreams.default).toMatchObject({ breaker: 'open', nextAttemptIn: 1 });
    expect(broker.upstream.requests.length).toBe(requestsWhileOpen);

    // Recovery: once the pause is over, the probe succeeds; the breaker closes and the last error clears.
    // The pause is the cache's own: with no token held it probes every 2–3 s after five failures.
    broker.upstream.setBehaviour(issueToken(broker.issued));
    const nextAttemptAt =
      broker.broker.upstreams.get('default')?.cache?.status().nextAttemptAt ?? clock.now();
    clock.advance(Math.max(300, nextAttemptAt - clock.now() + 1));
    expect(await verbose()).toEqual({
      status: 200,
      body: {
        status: 'ready',
        upstreams: { default: { token: 'held', expiresIn: 3600, breaker: 'closed', api: afterCall.api } },
      },
    });

    // The API goes down: reported, yet still ready (docs/operations.md says why).
    await api.close();
    api = undefined;
    // The first client token expired with the clock's jumps; a fresh one reaches the API's closed port.
    expect(await proxied(await broker.clientToken())).toBe(503);
    const apiDown = await verbose();
    expect(apiDown.status).toBe(200);
    expect(apiDown.body.upstreams.default.api).toEqual({
      answered: false,
      code: 'upstream_unavailable',
      at: expect.any(String),
    });

    // Probes are polled without end: their access lines are debug, 503 included.
    const probeLines = broker.logs
      .lines()
      .filter((line) => line.msg === 'request' && line.path === '/readyz');
    expect(probeLines.length).toBeGreaterThan(5);
    expect(new Set(probeLines.map((line) => line.level))).toEqual(new Set(['debug']));
  });

  it('when /readyz is asked without verbose, then it keeps the shape existing probes read', async () => {
    const broker = await startBroker({ upstream: 'fake' });
    const answer = JSON.parse((await broker.request({ path: '/readyz' })).body);
    const held = { token: 'held', expiresIn: expect.any(Number) };
    expect(answer).toEqual({ status: 'ready', upstream: held, upstreams: { default: held } });
  });
});
