import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spanNames } from '../../src/telemetry/spans.js';
import { startFixedApi } from '../support/apiServers.js';
import { appOrigin } from '../support/broker.js';
import { startBrokerProcess } from '../support/brokerProcess.js';
import { ath, makeProof, proofKey } from '../support/dpopProofs.js';
import { encodings } from '../support/leaks.js';
import { registerSecret } from '../support/logs.js';
import { issueToken, startFakeTokenServer } from '../support/oauthServers.js';
import { attribute, startOtlpReceiver } from '../support/otlpReceiver.js';
import { startSiteverifyServer } from '../support/siteverifyServers.js';
import { waitFor } from '../support/waiting.js';

/**
 * The leak test with tracing on: a broker exporting every span, driven through each path that handles
 * a secret (an attestation proof and a DPoP proof at the mint, a DPoP-bound client token and an upstream
 * token placed in the API's query on the proxy, an API key in the claim route's query and in a header,
 * Redis holding the encrypted token under the fleet lock). No exported span may hold any of them in
 * any attribute, event or status message, in any encoding. The whole-run scan (globalSetup.ts) reads
 * the same spans again with every secret every suite registered.
 */
describe('secrets and exported spans', () => {
  const prefix = `tb-test-${randomBytes(6).toString('hex')}:`;
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true });
  const secrets: string[] = [];
  const secret = (label: string, value: string) => {
    secrets.push(registerSecret(label, value));
    return value;
  };
  const apiKey = secret('broker api key', `bk-${randomBytes(24).toString('base64url')}`);
  let close: () => Promise<void> = async () => undefined;
  let run: {
    broker: Awaited<ReturnType<typeof startBrokerProcess>>;
    receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
    issued: string[];
    api: Awaited<ReturnType<typeof startFixedApi>>;
  };

  beforeAll(async () => {
    const receiver = await startOtlpReceiver();
    const issued: string[] = [];
    const upstream = await startFakeTokenServer(issueToken(issued));
    const api = await startFixedApi();
    const siteverifySecret = secret('siteverify secret', `sv-${randomBytes(24).toString('base64url')}`);
    const siteverify = await startSiteverifyServer({
      secret: siteverifySecret,
      hostname: new URL(appOrigin).hostname,
    });
    const broker = await startBrokerProcess({
      LOG_LEVEL: 'debug',
      ALLOWED_ORIGINS: appOrigin,
      BROKER_API_KEYS: apiKey,
      UPSTREAM_TOKEN_URL: upstream.tokenUrl,
      UPSTREAM_CLIENT_ID: 'tracing-leaks',
      UPSTREAM_CLIENT_SECRET: secret('upstream client secret', `cs-${randomBytes(24).toString('base64url')}`),
      UPSTREAM_API_URL: api.origin,
      UPSTREAM_CREDENTIAL_IN: 'query:access_token',
      CLIENT_TOKEN_BINDING: 'dpop',
      CLIENT_TOKEN_ATTESTATION: 'turnstile',
      CLIENT_TOKEN_ATTESTATION_SECRET: siteverifySecret,
      CLIENT_TOKEN_ATTESTATION_VERIFY_URL: siteverify.url,
      CLIENT_TOKEN_ATTESTATION_SITE_KEY: 'site-key-1',
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_KEY_PREFIX: prefix,
      CACHE_ENCRYPTION_KEY: secret('cache encryption key', randomBytes(32).toString('hex')),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    close = async () => {
      await broker.stop();
      await Promise.all([api.close(), upstream.close(), siteverify.close(), receiver.close()]);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    };
    run = { broker, receiver, issued, api };
  });
  afterAll(() => close());

  it('when every secret-bearing path is traced, then no span holds a token, secret, API key, proof or query credential', async () => {
    const { broker, receiver, issued, api } = run;
    const key = await proofKey();

    const mintUrl = `${broker.url}/api/client-token`;
    const mintProof = secret('dpop proof (mint)', await makeProof(key, { htm: 'POST', htu: mintUrl }));
    const attestation = secret('attestation proof', `ok-${randomBytes(24).toString('base64url')}`);
    const minted = await fetch(mintUrl, {
      method: 'POST',
      headers: { origin: appOrigin, dpop: mintProof, attestation },
    });
    expect(minted.status).toBe(200);
    const clientToken = secret('dpop client token', ((await minted.json()) as { token: string }).token);

    const proxyUrl = `${broker.url}/api/proxy/things`;
    const callProof = secret(
      'dpop proof (proxy)',
      await makeProof(key, { htm: 'GET', htu: proxyUrl, ath: ath(clientToken) }),
    );
    const proxied = await fetch(`${proxyUrl}?page=1`, {
      headers: { origin: appOrigin, authorization: `DPoP ${clientToken}`, dpop: callProof },
    });
    expect(proxied.status).toBe(200);
    const upstreamToken = issued.at(-1) ?? '';
    secrets.push(upstreamToken);
    // The API did get the credential in its query: a span that copied the URL would hold it.
    expect(api.requests.at(-1)?.url).toContain(`access_token=${upstreamToken}`);

    const claimed = await fetch(
      `${broker.url}/api/auth/claim?token=${encodeURIComponent(apiKey)}&origin=${encodeURIComponent(appOrigin)}`,
      { method: 'POST' },
    );
    expect(claimed.status).toBe(200);
    const claimedToken = secret('claimed client token', ((await claimed.json()) as { token: string }).token);
    // A body that arrives after the headers, in a packet of its own: Express's parser ends it in a stream
    // event, and what follows must still belong to the request.
    const lateBody = new ReadableStream<Uint8Array>({
      async start(controller) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        controller.enqueue(new TextEncoder().encode(JSON.stringify({ token: claimedToken })));
        controller.close();
      },
    });
    const revoked = await fetch(`${broker.url}/api/client-token/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: lateBody,
      duplex: 'half',
    } as RequestInit);
    expect(revoked.status).toBe(200);
    const handedOut = await fetch(`${broker.url}/api/upstream-token`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(handedOut.status).toBe(200);

    const named = (name: string) => receiver.spans.filter((span) => span.name === name);
    const claimSpan = () => named('POST claim')[0];
    const revokeSpan = () => named('POST revoke')[0];
    const underRevoke = () => {
      const parent = revokeSpan();
      return parent ? receiver.spans.filter((span) => span.parentSpanId === parent.spanId) : [];
    };
    await waitFor(
      () =>
        [
          spanNames.attestation,
          spanNames.mint,
          spanNames.proxy,
          spanNames.lease,
          spanNames.fencedWrite,
        ].every((name) => named(name).length > 0) &&
        claimSpan() !== undefined &&
        underRevoke().length > 0 &&
        receiver.spans.some((span) => /^eval /i.test(String(attribute(span, 'db.query.text') ?? ''))),
      15_000,
    );
    // The spans did see where the secrets were: the query credential's and the claim key's names, redacted.
    expect(
      receiver.spans.some(
        (span) => attribute(span, 'url.full') === `${api.origin}/things?page=REDACTED&access_token=REDACTED`,
      ),
    ).toBe(true);
    expect(attribute(claimSpan(), 'url.query')).toBe('token=REDACTED&origin=REDACTED');
    // The revocation's Redis commands, under the revoke route's server span.
    expect(
      underRevoke().some((span) => attribute(span, 'db.system.name') ?? attribute(span, 'db.system')),
    ).toBe(true);
    expect(attribute(named(spanNames.attestation)[0], 'token_broker.attestation.outcome')).toBe('passed');
    expect(attribute(named(spanNames.fencedWrite)[0], 'token_broker.fleet.fence.accepted')).toBe(true);

    for (const span of receiver.spans) {
      const exported = JSON.stringify({
        name: span.name,
        attributes: span.attributes,
        events: span.events,
        status: span.status,
      });
      for (const value of secrets) {
        for (const spelling of encodings(value)) {
          if (spelling.length < 12) continue;
          expect(exported.includes(spelling), `span ${span.name} holds a secret`).toBe(false);
        }
      }
    }
  });
});
