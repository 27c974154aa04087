import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { type ApiBroker, appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { dpopEnv, makeProof, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';

/** Issue #12, hardening: DPoP `htu` against PUBLIC_URL, and `/metrics` in production. */

const upstream = {
  UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
  UPSTREAM_CLIENT_ID: 'broker',
  UPSTREAM_CLIENT_SECRET: 'an-upstream-secret-value',
};

async function signingKeys(): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('public url test signing key', jwk.d ?? '');
  return JSON.stringify({ keys: [{ ...jwk, kid: `k-${randomBytes(4).toString('hex')}`, alg: 'EdDSA' }] });
}

describe('PUBLIC_URL and DPoP htu', () => {
  let broker: ApiBroker | undefined;
  afterAll(async () => {
    await broker?.close();
  });

  it('when CLIENT_TOKEN_BINDING=dpop in production without PUBLIC_URL, then start-up says to set it', async () => {
    let problems: string[] = [];
    try {
      loadConfig({
        ...upstream,
        NODE_ENV: 'production',
        SIGNING_KEYS: await signingKeys(),
        CLIENT_TOKEN_BINDING: 'dpop',
      });
    } catch (error) {
      if (error instanceof ConfigError) problems = error.problems;
    }
    expect(problems).toEqual([
      expect.stringMatching(/^PUBLIC_URL: required with CLIENT_TOKEN_BINDING=dpop in production/),
    ]);
  });

  it('when PUBLIC_URL is set, then a proof must name it: one naming the Host the client sent is refused', async () => {
    broker = await startBroker({
      api: 'verifying',
      env: { ...dpopEnv, PUBLIC_URL: 'https://broker.example.com/' },
    });
    const key = await proofKey();
    const path = '/api/client-token';
    const ask = async (htu: string, host?: string) => {
      const response = await fetch(`${broker?.url}${path}`, {
        method: 'POST',
        headers: {
          origin: appOrigin,
          dpop: await makeProof(key, { htm: 'POST', htu }),
          ...(host ? { host } : {}),
        },
      });
      return { status: response.status, body: (await response.json()) as { code?: string; detail?: string } };
    };
    const byHost = await ask(`${broker.url}${path}`);
    expect(byHost).toMatchObject({
      status: 400,
      body: { code: 'invalid_dpop_proof', detail: 'the proof was made for another URL' },
    });
    const spoofedHost = await ask(`http://evil.example${path}`, 'evil.example');
    expect(spoofedHost.status).toBe(400);
    const good = await ask(`https://broker.example.com${path}`);
    expect(good.status).toBe(200);
  });
});

describe('/metrics in production', () => {
  const brokers: FakeUpstreamBroker[] = [];
  afterAll(async () => {
    await Promise.all(brokers.map((broker) => broker.close()));
  });

  it('when served on the traffic port in production, then /metrics needs the API key', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { NODE_ENV: 'production', SIGNING_KEYS: await signingKeys() },
    });
    brokers.push(broker);
    const anonymous = await broker.request({ path: '/metrics' });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.body)).toMatchObject({ code: 'invalid_api_key' });
    const scraper = await broker.request({
      path: '/metrics',
      headers: { authorization: `Bearer ${broker.apiKey}` },
    });
    expect(scraper.status).toBe(200);
    expect(scraper.body).toContain('token_broker_');
  });

  it('when not in production, then /metrics stays open by default', async () => {
    const broker = await startBroker({ upstream: 'fake' });
    brokers.push(broker);
    expect((await broker.request({ path: '/metrics' })).status).toBe(200);
  });
});
