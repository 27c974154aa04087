import { afterAll, describe, expect, it } from 'vitest';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { type Behaviour, issueToken, reply } from '../support/oauthServers.js';
import { sleep } from '../support/waiting.js';

/**
 * Issue #12 defect 5: after the token endpoint refused our configuration (invalid_client) long enough to
 * open the breaker, a healed upstream had to wait out the breaker's 30 s. With the default timings, real
 * clocks and a real token endpoint: at most one request in flight, at most one per 2 s while it refuses,
 * and a token within 5 s once it accepts.
 */

const brokers: FakeUpstreamBroker[] = [];
afterAll(async () => {
  await Promise.all(brokers.map((broker) => broker.close()));
});

describe('a token endpoint that refuses the configuration, then heals', () => {
  it('when it answers invalid_client for 7 s under constant demand, then it is probed one at a time at most every 2 s, and a token is served within 5 s of the fix', async () => {
    const started: number[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    let healed = false;
    // The default renewal policy: the production timings are what is under test.
    const broker = await startBroker({
      upstream: 'fake',
      cachePolicy: {},
      behaviour: (issued) => {
        const issue = issueToken(issued);
        return async (req, res) => {
          started.push(performance.now());
          inFlight += 1;
          maxInFlight = Math.max(maxInFlight, inFlight);
          // Long enough for concurrent callers to pile up behind one probe.
          await sleep(150);
          inFlight -= 1;
          if (healed) return issue(req, res);
          reply(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' });
        };
      },
    });
    brokers.push(broker);
    const ask = () =>
      broker.request({ path: '/api/upstream-token', headers: { authorization: `Bearer ${broker.apiKey}` } });

    let healedAt = 0;
    let servedAt = 0;
    const callers = Array.from({ length: 8 }, async () => {
      while (servedAt === 0) {
        const answer = await ask();
        if (answer.status === 200) {
          servedAt ||= performance.now();
          return;
        }
        expect(answer.status).toBe(502);
        expect(JSON.parse(answer.body)).toMatchObject({ code: 'upstream_rejected' });
        await sleep(20);
      }
    });
    await sleep(7_000);
    healed = true;
    healedAt = performance.now();
    await Promise.all(callers);

    expect(maxInFlight).toBe(1);
    const whileDown = started.filter((at) => at < healedAt);
    expect(whileDown.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < whileDown.length; i += 1) {
      expect((whileDown[i] as number) - (whileDown[i - 1] as number)).toBeGreaterThanOrEqual(1_990);
    }
    expect(servedAt - healedAt).toBeLessThan(5_000);
    // One error line for the streak, whatever the number of probes.
    expect(broker.logs.lines().filter((line) => line.level === 'error')).toHaveLength(1);
  }, 20_000);
});

/**
 * Issue #24 defect 7: after 5xx answers for 20 s, the first token came about 11 s after the upstream
 * healed (a growing backoff, then a 30 s breaker). Now any outage is probed at the refused
 * configuration's pace once the breaker opens. Default timings, real clocks, a real token endpoint.
 */
describe('a token endpoint that fails, then heals', () => {
  it.each([
    ['answers 500', (res: Parameters<Behaviour>[1]) => reply(res, 500, { error: 'server_error' })],
    ['does not answer within UPSTREAM_TIMEOUT_MS', () => undefined],
  ])(
    'when it %s for 9 s under constant demand, then once down it is probed at most every 2 s, the Retry-After of /readyz says when the next is due, and a token is served within 5 s of the fix',
    async (_kind, fail) => {
      const started: number[] = [];
      let healed = false;
      const outage = await startBroker({
        upstream: 'fake',
        cachePolicy: {},
        behaviour: (issued) => {
          const issue = issueToken(issued);
          return (req, res) => {
            started.push(performance.now());
            if (healed) return issue(req, res);
            return fail(res);
          };
        },
      });
      brokers.push(outage);
      const ask = () =>
        outage.request({
          path: '/api/upstream-token',
          headers: { authorization: `Bearer ${outage.apiKey}` },
        });
      let servedAt = 0;
      const callers = Array.from({ length: 4 }, async () => {
        while (servedAt === 0) {
          const answer = await ask();
          if (answer.status === 200) {
            servedAt ||= performance.now();
            return;
          }
          expect(answer.status).toBeGreaterThanOrEqual(503);
          await sleep(20);
        }
      });
      await sleep(9_000);
      const readiness = await outage.request({ path: '/readyz' });
      expect(readiness.status).toBe(503);
      expect(JSON.parse(readiness.body)).toMatchObject({ upstream: { token: 'unavailable' } });
      // When the next probe is due, hence when this answer may change.
      expect(Number(readiness.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(readiness.headers['retry-after'])).toBeLessThanOrEqual(3);
      healed = true;
      const healedAt = performance.now();
      await Promise.all(callers);

      // The breaker opens at the 5th failure (the default threshold): from then on the steady pace, up to
      // and including the probe that found the upstream healed.
      const probes = started.slice(4);
      expect(probes.length).toBeGreaterThanOrEqual(2);
      for (let i = 1; i < probes.length; i += 1) {
        expect((probes[i] as number) - (probes[i - 1] as number)).toBeGreaterThanOrEqual(1_990);
      }
      expect(servedAt - healedAt).toBeLessThan(5_000);
    },
    30_000,
  );
});
