import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';

/**
 * Issue #12 defect 3: a claim token's `sub` named the API key by an unsalted prefix of SHA-256(key), an
 * offline guessing oracle. It is now an HMAC under a secret derived from SIGNING_KEYS, and keys are at
 * least 32 characters.
 */

const origin = 'https://app.example.com';

async function signingKeys(): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('claim subject signing key', jwk.d ?? '');
  return JSON.stringify({ keys: [{ ...jwk, kid: `k-${randomBytes(4).toString('hex')}`, alg: 'EdDSA' }] });
}

async function claimSub(target: FakeUpstreamBroker): Promise<string> {
  const answer = await target.request({
    method: 'POST',
    path: '/api/auth/claim',
    headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ origin }),
  });
  expect(answer.status).toBe(200);
  const { token } = JSON.parse(answer.body) as { token: string };
  registerSecret('claim subject token', token);
  return String(decodeJwt(token).sub);
}

describe('the claim token names its API key without a guessing oracle', () => {
  const brokers: FakeUpstreamBroker[] = [];
  let keysA: string;
  beforeAll(async () => {
    keysA = await signingKeys();
  });
  afterAll(async () => {
    await Promise.all(brokers.map((broker) => broker.close()));
  });

  it('when a backend claims a token, then its sub holds no prefix of the key hash, is the same on a replica with the same SIGNING_KEYS, and differs under other SIGNING_KEYS', async () => {
    const first = await startBroker({ upstream: 'fake', env: { SIGNING_KEYS: keysA } });
    brokers.push(first);
    const apiKey = first.apiKey;
    const replica = await startBroker({
      upstream: 'fake',
      env: { SIGNING_KEYS: keysA, BROKER_API_KEYS: apiKey },
    });
    const other = await startBroker({
      upstream: 'fake',
      env: { SIGNING_KEYS: await signingKeys(), BROKER_API_KEYS: apiKey },
    });
    brokers.push(replica, other);

    const sub = await claimSub(first);
    expect(sub).toMatch(/^api-key:[A-Za-z0-9_-]{22}$/);
    const label = sub.slice('api-key:'.length);
    const digest = createHash('sha256').update(apiKey).digest();
    for (const spelling of [
      digest.toString('hex'),
      digest.toString('base64url'),
      digest.toString('base64'),
    ]) {
      expect(spelling.includes(label.slice(0, 8))).toBe(false);
      expect(label.includes(spelling.slice(0, 8))).toBe(false);
    }
    // Requests through a replica sharing the keys (and the key) carry one label: audit works fleet-wide.
    replica.apiKey = apiKey;
    expect(await claimSub(replica)).toBe(sub);
    other.apiKey = apiKey;
    expect(await claimSub(other)).not.toBe(sub);
  });
});

describe('API keys are long enough', () => {
  const env = {
    UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
    UPSTREAM_CLIENT_ID: 'broker',
    UPSTREAM_CLIENT_SECRET: 'an-upstream-secret-value',
  };
  it('when a key has 31 characters, then start-up refuses it, says how to make one, and never prints it', () => {
    const short = `${'k'.repeat(30)}Z`;
    let problems: string[] = [];
    try {
      loadConfig({ ...env, BROKER_API_KEYS: short });
    } catch (error) {
      if (error instanceof ConfigError) problems = error.problems;
    }
    expect(problems).toEqual([
      'BROKER_API_KEYS: each key must be at least 32 characters: make one with `openssl rand -base64 32` (or give its sha256:<hex> hash), e.g. BROKER_API_KEYS=$(openssl rand -base64 32)',
    ]);
  });

  it('when a key has 32 characters or is a sha256:<hex> digest, then it is accepted', () => {
    const digest = `sha256:${createHash('sha256').update('x').digest('hex')}`;
    expect(loadConfig({ ...env, BROKER_API_KEYS: `${'k'.repeat(32)},${digest}` }).apiKeys).toHaveLength(2);
  });
});
