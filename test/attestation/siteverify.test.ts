import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { type SiteverifyServer, startSiteverifyServer } from '../support/siteverifyServers.js';

const secret = registerSecret('siteverify secret', `sv-${randomBytes(24).toString('base64url')}`);
let provider: SiteverifyServer;

beforeAll(async () => {
  provider = await startSiteverifyServer({
    secret,
    hostname: new URL(appOrigin).hostname,
    action: 'client_token',
  });
});

afterAll(async () => {
  await provider?.close();
});

function brokerFor(name: string, env: Record<string, string> = {}): Promise<FakeUpstreamBroker> {
  return startBroker({
    upstream: 'fake',
    env: {
      CLIENT_TOKEN_ATTESTATION: name,
      CLIENT_TOKEN_ATTESTATION_SECRET: secret,
      CLIENT_TOKEN_ATTESTATION_VERIFY_URL: provider.url,
      CLIENT_TOKEN_ATTESTATION_SITE_KEY: 'site-key-1',
      CLIENT_TOKEN_ATTESTATION_TIMEOUT_MS: '300',
      ...env,
    },
  });
}

async function mint(broker: FakeUpstreamBroker, proof: string | undefined, origin = appOrigin) {
  const answer = await broker.request({
    method: 'POST',
    path: '/api/client-token',
    headers: { origin, ...(proof === undefined ? {} : { attestation: proof }) },
  });
  return {
    status: answer.status,
    body: JSON.parse(answer.body) as { code?: string; detail?: string },
    text: answer.body,
  };
}

/** A response token the stand-in accepts once. */
const token = () => registerSecret('widget token', `ok-${randomBytes(16).toString('base64url')}`);

describe.each(['turnstile', 'hcaptcha', 'recaptcha'])('CLIENT_TOKEN_ATTESTATION=%s', (name) => {
  it('when the provider says success for this hostname, then a token is minted, after the documented request', async () => {
    const broker = await brokerFor(name);
    const proof = token();
    expect((await mint(broker, proof)).status).toBe(200);
    const sent = provider.requests.at(-1);
    expect(sent?.contentType).toBe('application/x-www-form-urlencoded');
    expect(sent?.fields).toMatchObject({ secret, response: proof, remoteip: '127.0.0.1' });
    // Only Turnstile documents an idempotency key.
    expect(sent?.fields.idempotency_key !== undefined).toBe(name === 'turnstile');
  });

  it('when the same widget token comes twice, then the second is refused with attestation_failed', async () => {
    const broker = await brokerFor(name);
    const proof = token();
    expect((await mint(broker, proof)).status).toBe(200);
    const again = await mint(broker, proof);
    expect(again.status).toBe(401);
    expect(again.body.code).toBe('attestation_failed');
  });
});

describe('siteverify answers the broker refuses', () => {
  it('when the token was solved on another hostname, then attestation_failed', async () => {
    const broker = await brokerFor('turnstile', { ALLOWED_ORIGINS: `${appOrigin},https://shop.example.org` });
    const answer = await mint(broker, token(), 'https://shop.example.org');
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 'attestation_failed' });
    expect(answer.body.detail).toContain('another site');
  });

  it('when the widget ran with another action than configured, then attestation_failed', async () => {
    const broker = await brokerFor('turnstile', { CLIENT_TOKEN_ATTESTATION_ACTION: 'checkout' });
    const answer = await mint(broker, token());
    expect(answer.status).toBe(401);
    expect(answer.body.detail).toContain('action "checkout"');
  });

  it('when the widget was solved longer ago than the max age, then attestation_failed', async () => {
    const broker = await brokerFor('hcaptcha');
    provider.setBehaviour(() => ({
      status: 200,
      body: JSON.stringify({
        success: true,
        hostname: 'app.example.com',
        challenge_ts: new Date(Date.now() - 600_000).toISOString(),
      }),
    }));
    try {
      const answer = await mint(broker, token());
      expect(answer.status).toBe(401);
      expect(answer.body.detail).toContain('too old');
    } finally {
      provider.reset();
    }
  });

  it.each([
    ['a timeout', () => 'hang' as const],
    ['a 500', () => ({ status: 500, body: 'oops' })],
    ['a malformed answer', () => ({ status: 200, body: '{"success":"yes"' })],
  ])(
    'when the provider gives %s, then the broker fails closed, logs and counts it, and never answers a 5xx',
    async (_label, behaviour) => {
      const broker = await brokerFor('turnstile');
      provider.setBehaviour(behaviour);
      try {
        const answer = await mint(broker, token());
        expect(answer.status).toBe(401);
        expect(answer.body.code).toBe('attestation_failed');
        expectNoSecrets(answer.text, [secret]);
        const refusal = broker.logs
          .lines()
          .find((line) => line.msg === 'request' && line.code === 'attestation_failed');
        expect(refusal).toMatchObject({ reason: 'provider_unavailable', origin: appOrigin });
        expect(await broker.broker.metrics.registry.metrics()).toContain(
          'token_broker_attestations_total{provider="turnstile",outcome="refused",reason="provider_unavailable"} 1',
        );
      } finally {
        provider.reset();
      }
    },
  );

  it('when the provider is down and CLIENT_TOKEN_ATTESTATION_FAIL_OPEN=true, then a token is minted, logged and counted', async () => {
    const broker = await brokerFor('turnstile', { CLIENT_TOKEN_ATTESTATION_FAIL_OPEN: 'true' });
    provider.setBehaviour(() => ({ status: 503, body: '' }));
    try {
      expect((await mint(broker, token())).status).toBe(200);
      expect(
        broker.logs
          .lines()
          .some(
            (line) =>
              line.reason === 'provider_unavailable' &&
              String(line.msg).includes('CLIENT_TOKEN_ATTESTATION_FAIL_OPEN'),
          ),
      ).toBe(true);
      expect(await broker.broker.metrics.registry.metrics()).toContain(
        'token_broker_attestations_total{provider="turnstile",outcome="failed_open",reason="provider_unavailable"} 1',
      );
    } finally {
      provider.reset();
    }
  });

  it('when the page asks the challenge route, then it gets the provider and its site key', async () => {
    const broker = await brokerFor('turnstile');
    const answer = await broker.request({
      path: '/api/client-token/challenge',
      headers: { origin: appOrigin },
    });
    expect(JSON.parse(answer.body)).toEqual({ provider: 'turnstile', siteKey: 'site-key-1' });
  });

  it('when no proof is sent, then attestation_required says to send the widget token, and logs never hold the secret', async () => {
    const broker = await brokerFor('recaptcha');
    const answer = await mint(broker, undefined);
    expect(answer.body).toMatchObject({ code: 'attestation_required' });
    expect(answer.body.detail).toContain('recaptcha widget');
    expectNoSecrets(JSON.stringify(broker.logs.lines()), [secret], 'log');
  });
});
