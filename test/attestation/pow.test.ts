import type { Challenge } from 'altcha-lib';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { expectNoSecrets } from '../support/logs.js';
import { fetchChallenge, powEnv, powProof, solve } from '../support/powProofs.js';

const otherOrigin = 'https://shop.example.org';

async function mint(broker: FakeUpstreamBroker, headers: Record<string, string>) {
  const answer = await broker.request({ method: 'POST', path: '/api/client-token', headers });
  return {
    status: answer.status,
    body: JSON.parse(answer.body) as { code?: string; detail?: string; token?: string },
  };
}

describe('CLIENT_TOKEN_ATTESTATION=pow', () => {
  it('when a script forges Origin and sends no solution, then it gets 401 attestation_required saying where the challenge is', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const answer = await mint(broker, { origin: appOrigin });
    expect(answer.status).toBe(401);
    expect(answer.body.code).toBe('attestation_required');
    expect(answer.body.detail).toContain('GET /api/client-token/challenge');
  });

  it('when a page sends a solution to its own challenge, then it gets a token, once', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const proof = await powProof(broker);
    const first = await mint(broker, { origin: appOrigin, attestation: proof });
    expect(first.status).toBe(200);
    expect(first.body.token).toBeTypeOf('string');
    const again = await mint(broker, { origin: appOrigin, attestation: proof });
    expect(again.status).toBe(401);
    expect(again.body.code).toBe('attestation_failed');
    expect(again.body.detail).toContain('already used');
  });

  it('when the challenge has expired, then the solution gets 401 attestation_failed', async () => {
    const clock = createManualClock(Date.now());
    const broker = await startBroker({
      upstream: 'fake',
      clock,
      env: { ...powEnv, CLIENT_TOKEN_ATTESTATION_POW_TTL: '30' },
    });
    const proof = await powProof(broker);
    clock.advance(31_000);
    const answer = await mint(broker, { origin: appOrigin, attestation: proof });
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 'attestation_failed' });
    expect(answer.body.detail).toContain('expired');
  });

  it('when the challenge was tampered with (an easier prefix), then the solution gets 401 attestation_failed', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { ...powEnv, CLIENT_TOKEN_ATTESTATION_POW_DIFFICULTY: '4' },
    });
    const challenge = await fetchChallenge(broker);
    const easier: Challenge = { ...challenge, parameters: { ...challenge.parameters, keyPrefix: '0' } };
    const answer = await mint(broker, { origin: appOrigin, attestation: await solve(easier) });
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 'attestation_failed' });
    expect(answer.body.detail).toContain('not issued by this broker');
  });

  it('when the challenge was issued for another origin, then the solution gets 401 attestation_failed', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const proof = await powProof(broker, otherOrigin);
    const answer = await mint(broker, { origin: appOrigin, attestation: proof });
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 'attestation_failed' });
    expect(answer.body.detail).toContain('another origin');
  });

  it('when the header is not an ALTCHA payload or the solution is wrong, then 401 attestation_failed, never a 5xx', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const challenge = await fetchChallenge(broker);
    const wrong = btoa(JSON.stringify({ challenge, solution: { counter: 1, derivedKey: 'ab'.repeat(32) } }));
    for (const attestation of ['garbage', btoa('{"challenge":1}'), wrong, '%%%']) {
      const answer = await mint(broker, { origin: appOrigin, attestation });
      expect(answer.status, attestation).toBe(401);
      expect(answer.body.code).toBe('attestation_failed');
    }
  });

  it('when a proof is refused, then its access line names code, origin and reason, the proof never, and the metric counts it', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const proof = await powProof(broker, otherOrigin);
    await mint(broker, { origin: appOrigin, attestation: proof });
    await mint(broker, { origin: appOrigin });
    const refusals = broker.logs
      .lines()
      .filter((line) => line.msg === 'request' && line.reason !== undefined);
    expect(refusals).toEqual([
      expect.objectContaining({
        code: 'attestation_failed',
        origin: appOrigin,
        provider: 'pow',
        reason: 'origin_mismatch',
      }),
      expect.objectContaining({
        code: 'attestation_required',
        origin: appOrigin,
        provider: 'pow',
        reason: 'missing',
      }),
    ]);
    expectNoSecrets(JSON.stringify(broker.logs.lines()), [proof], 'log');
    const metrics = await broker.broker.metrics.registry.metrics();
    expect(metrics).toContain(
      'token_broker_attestations_total{provider="pow",outcome="refused",reason="origin_mismatch"} 1',
    );
  });

  it('when tokens come from /api/auth/claim, then no proof is asked', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const answer = await broker.request({
      method: 'POST',
      path: '/api/auth/claim',
      headers: { authorization: `Bearer ${broker.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ origin: appOrigin }),
    });
    expect(answer.status).toBe(200);
  });

  it('when a page preflights the Attestation header, then CORS allows it for an allowed origin', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const answer = await broker.request({
      method: 'OPTIONS',
      path: '/api/client-token',
      headers: {
        origin: appOrigin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'attestation',
      },
    });
    expect(answer.status).toBe(204);
    expect(String(answer.headers['access-control-allow-headers'])).toContain('attestation');
  });

  it('when an address asks for more challenges than RATE_LIMIT_CHALLENGE, then it gets 429 rate_limited', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { ...powEnv, RATE_LIMIT_CHALLENGE: '2/minute' },
    });
    await fetchChallenge(broker);
    await fetchChallenge(broker);
    const third = await broker.request({
      path: '/api/client-token/challenge',
      headers: { origin: appOrigin },
    });
    expect(third.status).toBe(429);
  });

  it('when the origin is not allowed, then no challenge is issued', async () => {
    const broker = await startBroker({ upstream: 'fake', env: powEnv });
    const answer = await broker.request({
      path: '/api/client-token/challenge',
      headers: { origin: 'https://evil.test' },
    });
    expect(answer.status).toBe(403);
  });
});

describe('CLIENT_TOKEN_ATTESTATION_AFTER', () => {
  it('when an address has had its tokens without a proof, then the next one needs a proof, and a proof still works', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { ...powEnv, CLIENT_TOKEN_ATTESTATION_AFTER: '2/minute' },
    });
    expect((await mint(broker, { origin: appOrigin })).status).toBe(200);
    expect((await mint(broker, { origin: appOrigin })).status).toBe(200);
    const third = await mint(broker, { origin: appOrigin });
    expect(third.status).toBe(401);
    expect(third.body.code).toBe('attestation_required');
    expect((await mint(broker, { origin: appOrigin, attestation: await powProof(broker) })).status).toBe(200);
  });
});

describe('CLIENT_TOKEN_ATTESTATION=none', () => {
  it('when attestation is off, then tokens are minted without a proof and there is no challenge route', async () => {
    const broker = await startBroker({ upstream: 'fake' });
    expect((await mint(broker, { origin: appOrigin })).status).toBe(200);
    const challenge = await broker.request({
      path: '/api/client-token/challenge',
      headers: { origin: appOrigin },
    });
    expect(challenge.status).toBe(404);
  });
});
