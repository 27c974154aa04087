import { describe, expect, it } from 'vitest';
import { startBroker } from '../support/broker.js';

/**
 * Issue #24 defect 1: the per-address counters in memory have a cap (RATE_LIMIT_MAX_ADDRESSES), and an
 * address past it is forgotten oldest first. Shown with the smallest cap (1,000) on a real broker that
 * trusts loopback's `X-Forwarded-For`, each request from a new IPv6 `/56` as in the attack; the figures at
 * 1,000,000 addresses are in docs/operations.md.
 */
describe('per-address counters are capped', () => {
  const cap = 1_000;
  const from = (n: number) => ({
    'x-forwarded-for': `2001:db8:${(n >>> 8).toString(16)}:${((n & 0xff) << 8).toString(16)}::1`,
  });

  it('when more addresses than the cap call, then the oldest address is forgotten: its exhausted budget starts again', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      env: { TRUST_PROXY: 'loopback', RATE_LIMIT_PROXY: '2/hour', RATE_LIMIT_MAX_ADDRESSES: String(cap) },
    });
    const proxied = (n: number) => broker.request({ path: '/api/proxy/x', headers: from(n) });
    for (let i = 0; i < 2; i++) expect((await proxied(0)).status).toBe(401);
    expect((await proxied(0)).status).toBe(429);
    // The newest addresses keep their counts while the cap holds.
    for (let n = 1; n < cap; n++) await proxied(n);
    expect((await proxied(0)).status).toBe(429);
    for (let n = cap; n < cap + 10; n++) await proxied(n);
    expect((await proxied(0)).status).toBe(401);
    expect((await proxied(cap + 9)).headers.ratelimit).toBe('"proxy"; r=0; t=3600');
  });

  it('when failed API keys come from more addresses than the cap, then the failure counter is capped too', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: {
        TRUST_PROXY: 'loopback',
        RATE_LIMIT_API_KEY_FAILURES: '1/hour',
        RATE_LIMIT_MAX_ADDRESSES: String(cap),
      },
    });
    const ask = (n: number) =>
      broker.request({
        path: '/api/upstream-token',
        headers: { ...from(n), authorization: 'Bearer not-a-key-not-a-key-not-a-key-not-a-key' },
      });
    expect((await ask(0)).status).toBe(401);
    expect((await ask(0)).status).toBe(429);
    for (let n = 1; n <= cap; n++) await ask(n);
    expect((await ask(0)).status).toBe(401);
  });
});
