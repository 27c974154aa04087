import { describe, expect, it } from 'vitest';
import { quotaProbeMs } from '../../src/upstream/quota.js';
import { startBroker } from '../support/broker.js';
import { reply } from '../support/oauthServers.js';
import { sleep } from '../support/waiting.js';

/**
 * Issue #24 loose end: while a configuration is refused, each replica's probes every 2-3 s counted
 * against UPSTREAM_TOKEN_QUOTA, so a small budget ran out before an operator fixed the secret. With a
 * quota, probes while down spend at most a tenth of it.
 */
describe('probes against a quota', () => {
  it('when a quota is set, then the probe pace spends at most a tenth of it, and never goes below 2 s', () => {
    expect(quotaProbeMs({ limit: 1_000, period: 'day' })).toBe(864_000);
    expect(quotaProbeMs({ limit: 100, period: 'minute' })).toBe(6_000);
    expect(quotaProbeMs({ limit: 432_000, period: 'day' })).toBe(2_000);
  });

  it('when the upstream refuses the configuration under UPSTREAM_TOKEN_QUOTA=100/minute, then it is probed every 6 to 9 s, not every 2 to 3 s', async () => {
    const started: number[] = [];
    const broker = await startBroker({
      upstream: 'fake',
      env: { UPSTREAM_TOKEN_QUOTA: '100/minute' },
      behaviour: () => (_req, res) => {
        started.push(performance.now());
        reply(res, 401, { error: 'invalid_client' });
      },
    });
    const until = performance.now() + 10_000;
    while (performance.now() < until) {
      const answer = await broker.request({
        path: '/api/upstream-token',
        headers: { authorization: `Bearer ${broker.apiKey}` },
      });
      expect(answer.status).toBe(502);
      await sleep(50);
    }
    // 10 s: the first probe, and one 6 to 9 s later (2 to 3 s apart it would have been four or five).
    expect(started).toHaveLength(2);
    expect((started[1] as number) - (started[0] as number)).toBeGreaterThanOrEqual(5_990);
  }, 20_000);
});
