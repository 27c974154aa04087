import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { startBrokerProcess } from '../support/brokerProcess.js';
import { makeProof, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';

/** Issue #24, defect 4 and the `htu`-against-`Host` loose end: PUBLIC_URL is a clean base, or no proof binds. */

const upstream = {
  UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
  UPSTREAM_CLIENT_ID: 'broker',
  UPSTREAM_CLIENT_SECRET: 'an-upstream-secret-value',
};

async function signingKeys(): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('public url prefix test signing key', jwk.d ?? '');
  return JSON.stringify({ keys: [{ ...jwk, kid: `k-${randomBytes(4).toString('hex')}`, alg: 'EdDSA' }] });
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...upstream, ...env });
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

describe('PUBLIC_URL must be a clean base URL', () => {
  it.each([
    ['a bare fragment', 'https://broker.example.com/#'],
    ['a fragment', 'https://broker.example.com/base#x'],
    ['a query', 'https://broker.example.com/?a=1'],
    ['an empty query', 'https://broker.example.com?'],
    ['user info', 'https://user:pass@broker.example.com'],
    ['a bare user', 'https://user@broker.example.com/base'],
    ['a dot-dot segment', 'https://broker.example.com/a/../b'],
    ['an encoded dot segment', 'https://broker.example.com/a/%2E%2e/b'],
    ['a dot segment', 'https://broker.example.com/./b'],
    ['an empty segment', 'https://broker.example.com//b'],
    ['a backslash', 'https://broker.example.com\\b'],
    ['a space', 'https://broker.example.com/a b'],
  ])('when it has %s, then start-up refuses it with an example', (_what, value) => {
    expect(problemsOf({ PUBLIC_URL: value })).toEqual([
      expect.stringMatching(/^PUBLIC_URL: must .*, e\.g\. PUBLIC_URL=https:\/\/app\.example\.com$/),
    ]);
  });

  it.each([
    'https://broker.example.com',
    'https://broker.example.com/',
    'https://example.com/auth/broker/',
    'http://[::1]:8080/base',
    'https://example.com/a%20b/v1.2',
  ])('when it is %s, then it is accepted', (value) => {
    expect(problemsOf({ PUBLIC_URL: value })).toEqual([]);
  });

  it('when a broker process is started with a fragment in PUBLIC_URL, then it exits saying why', async () => {
    await expect(
      startBrokerProcess({ ...upstream, PUBLIC_URL: 'https://broker.example.com/#' }, 20_000),
    ).rejects.toThrow(
      /PUBLIC_URL: must not have a query or fragment.*e\.g\. PUBLIC_URL=https:\/\/app\.example\.com/,
    );
  });
});

describe('a DPoP proof in production without PUBLIC_URL', () => {
  it('when CLIENT_TOKEN_BINDING=none, then a proof binds nothing: 400 saying to set PUBLIC_URL, while a plain request gets a token', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { NODE_ENV: 'production', SIGNING_KEYS: await signingKeys() },
    });
    const key = await proofKey();
    const path = '/api/client-token';
    const withProof = await broker.request({
      method: 'POST',
      path,
      headers: {
        origin: appOrigin,
        dpop: await makeProof(key, { htm: 'POST', htu: `${broker.url}${path}` }),
      },
    });
    expect(withProof.status).toBe(400);
    expect(JSON.parse(withProof.body)).toMatchObject({
      code: 'invalid_dpop_proof',
      detail: expect.stringContaining('PUBLIC_URL'),
    });
    const plain = await broker.request({ method: 'POST', path, headers: { origin: appOrigin } });
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.body)).toMatchObject({ tokenType: 'Bearer' });
  });

  it('when PUBLIC_URL is set, then the same proof naming it binds the token', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: {
        NODE_ENV: 'production',
        SIGNING_KEYS: await signingKeys(),
        PUBLIC_URL: 'https://broker.example.com',
      },
    });
    const key = await proofKey();
    const path = '/api/client-token';
    const answer = await broker.request({
      method: 'POST',
      path,
      headers: {
        origin: appOrigin,
        dpop: await makeProof(key, { htm: 'POST', htu: `https://broker.example.com${path}` }),
      },
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ tokenType: 'DPoP' });
  });
});
