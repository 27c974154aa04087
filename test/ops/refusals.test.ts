import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';
import { sample } from '../support/metricsText.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('refusals you can find', () => {
  let broker: BrokerHandle<'fake', 'fixed'>;
  beforeAll(async () => {
    broker = await startBroker({ upstream: 'fake', api: 'fixed', logLevel: 'info' });
  });
  afterAll(async () => {
    await broker?.close();
  });

  const accessLine = (requestId: unknown) =>
    broker.logs.lines().find((line) => line.reqId === requestId && line.msg === 'request');
  const metrics = async () => (await broker.request({ path: '/metrics' })).body;

  it('when requests are refused, then each access line carries its code, origin refusals the origin truncated, and the counter moved by route', async () => {
    const longOrigin = `https://${'a'.repeat(150)}.example`;
    const refused = [
      await broker.request({
        method: 'POST',
        path: '/api/client-token',
        headers: { origin: 'https://evil.example' },
      }),
      await broker.request({ method: 'POST', path: '/api/client-token', headers: { origin: longOrigin } }),
      await broker.request({ path: '/api/upstream-token' }),
      await broker.request({ path: '/api/proxy/things', headers: { origin: appOrigin } }),
      await broker.request({ path: '/nowhere/42' }),
    ];
    expect(refused.map((answer) => answer.status)).toEqual([403, 403, 401, 401, 404]);
    const lines = refused.map((answer) => accessLine(answer.headers['x-request-id']));
    expect(lines.map((line) => ({ status: line?.status, code: line?.code, origin: line?.origin }))).toEqual([
      { status: 403, code: 'origin_not_allowed', origin: 'https://evil.example' },
      { status: 403, code: 'origin_not_allowed', origin: longOrigin.slice(0, 100) },
      { status: 401, code: 'invalid_api_key', origin: undefined },
      { status: 401, code: 'invalid_client_token', origin: undefined },
      { status: 404, code: 'not_found', origin: undefined },
    ]);

    const text = await metrics();
    const refusals = (code: string, route: string) =>
      sample(text, 'token_broker_refusals_total', { code, route });
    expect(refusals('origin_not_allowed', 'clientToken')).toBe(2);
    expect(refusals('invalid_api_key', 'upstreamToken')).toBe(1);
    expect(refusals('invalid_client_token', 'proxy')).toBe(1);
    // An unmatched path is not a label value: a client could mint those without end.
    expect(refusals('not_found', 'none')).toBe(1);
    expect(text).not.toContain('/nowhere/42');
  });

  it('when answers succeed, then no refusal is counted and their access line carries no code', async () => {
    const before = await metrics();
    const ok = await broker.request({ path: '/healthz' });
    const minted = await broker.request({
      method: 'POST',
      path: '/api/client-token',
      headers: { origin: appOrigin },
    });
    expect([ok.status, minted.status]).toEqual([200, 200]);
    expect(accessLine(minted.headers['x-request-id'])).not.toHaveProperty('code');
    const total = (text: string) =>
      text
        .split('\n')
        .filter((line) => line.startsWith('token_broker_refusals_total{'))
        .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    expect(total(await metrics())).toBe(total(before));
  });

  it('when scraped, then build_info names the package version and the Node.js version', async () => {
    expect(sample(await metrics(), 'token_broker_build_info', { version, node: process.version })).toBe(1);
  });
});
