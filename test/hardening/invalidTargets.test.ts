import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { call } from '../support/rawCall.js';

/** Issue #24, defect 6: a target that is no URL gets the broker's own 400, through the shared first steps. */
describe('absolute-form targets that are not URLs', () => {
  let broker: FakeUpstreamBroker;
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  beforeAll(async () => {
    broker = await startBroker({ upstream: 'fake', api: 'fixed' });
    process.on('warning', onWarning);
  });
  afterAll(async () => {
    process.off('warning', onWarning);
    await broker.close();
  });

  it.each([
    ['an unclosed IPv6 bracket', 'http://[::1/api/proxy/x', '/api/proxy/x'],
    ['a lone bracket', 'http://[/api/client-token', '/api/client-token'],
    ['a port that is no number', 'http://broker:bad/api/proxy/x', '/api/proxy/x'],
    ['a port out of range', 'http://broker:99999/healthz', '/healthz'],
    ['a bad percent-escape in the host', 'http://%zz/api/proxy/x', '/api/proxy/x'],
  ])(
    'when the target has %s, then the answer is a logged, counted 400 problem with the usual headers',
    async (_what, target, path) => {
      const before = await proxyCount();
      const answer = await call(broker.url, target, { headers: { 'x-request-id': `bad-target-${before}` } });
      expect(answer.status).toBe(400);
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(answer.json()).toMatchObject({
        code: 'invalid_request',
        detail: expect.stringContaining('not a valid URL'),
      });
      expect(answer.headers['x-request-id']).toBe(`bad-target-${before}`);
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
      expect(answer.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(broker.logs.lines()).toContainEqual(
        expect.objectContaining({ reqId: `bad-target-${before}`, msg: 'request', path, status: 400 }),
      );
      if (path.startsWith('/api/proxy/')) expect(await proxyCount()).toBe(before + 1);
      expect(warnings).toEqual([]);
    },
  );

  it('when the target is a valid absolute URL, then it is served as before', async () => {
    const answer = await call(broker.url, `http://127.0.0.1/healthz`);
    expect(answer.status).toBe(200);
  });

  async function proxyCount(): Promise<number> {
    const text = (await broker.request({ path: '/metrics' })).body;
    const line = text
      .split('\n')
      .find(
        (entry) =>
          entry.startsWith('token_broker_proxy_request_duration_seconds_count{') &&
          entry.includes('status="400"'),
      );
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  }
});
