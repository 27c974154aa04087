import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { BrokerError } from '../../src/errors.js';
import { createClientTokens } from '../../src/signing/clientTokens.js';
import { loadSigningKeys } from '../../src/signing/keys.js';
import { createRevocationList, revocationKey } from '../../src/signing/revocations.js';
import type { KeyValueStore } from '../../src/store/types.js';
import { type ApiServer, startEchoApi } from '../support/apiServers.js';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { signatureSpellings } from '../support/jwtForgery.js';
import { captureLogs, expectNoSecrets, registerSecret } from '../support/logs.js';
import { clientTokenConfig as config, privateJwk } from '../support/signingKeys.js';

/**
 * A compact JWS can be spelled in more than one way: the last base64url character of the signature has
 * spare low bits (RFC 4648 §3.5) that jose's decoder ignores, so up to 16 strings carry one signature.
 * The broker accepts only the canonical spelling (issue #12 defect 4), and revocation is keyed by `jti`
 * (RFC 7519 §4.1.7), never by the token string.
 */

const origin = 'https://app.example.com';

/** A store that keeps what it is given, so the test can see under which key a revocation was written. */
function keptStore(): KeyValueStore & { keys(): string[]; values(): string[] } {
  const entries = new Map<string, string>();
  return {
    get: async (key) => entries.get(key),
    set: async (key, value) => {
      entries.set(key, value);
    },
    delete: async (key) => {
      entries.delete(key);
    },
    close: async () => {},
    keys: () => [...entries.keys()],
    values: () => [...entries.values()],
  };
}

const refusalOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (caught: unknown) => (caught instanceof BrokerError ? caught.code : caught),
  );

describe('client tokens: one signature, several spellings', () => {
  it.each([
    ['EdDSA', 15],
    ['ES256', 15],
    ['HS256', 3],
  ] as const)(
    'when a %s token is respelled in its spare signature bits, then every respelling is refused, and the revocation is stored under the jti',
    async (alg, expectedSpellings) => {
      const { logger } = captureLogs();
      const clock = createManualClock();
      const store = keptStore();
      const revocations = createRevocationList({ clock, store, clockToleranceSeconds: 5 });
      const keys = await loadSigningKeys({
        jwks: { keys: [await privateJwk(alg, alg)] },
        production: true,
        logger,
      });
      const tokens = createClientTokens({ keys, config, clock, revocations });
      const minted = await tokens.mint({ sub: origin, origin });
      registerSecret('jti test client token', minted.token);
      const spellings = signatureSpellings(minted.token);
      expect(spellings).toHaveLength(expectedSpellings);
      expect(new Set([minted.token, ...spellings]).size).toBe(expectedSpellings + 1);

      // jose decodes base64url leniently; the broker refuses every spelling but the canonical one.
      for (const spelling of spellings) {
        expect(await refusalOf(tokens.verify(spelling))).toBe('invalid_client_token');
      }
      await expect(tokens.verify(minted.token)).resolves.toMatchObject({ jti: minted.jti });

      await revocations.revoke(minted.jti, minted.exp);
      expect(await refusalOf(tokens.verify(minted.token))).toBe('token_revoked');
      // What was stored (and would be shared with other replicas) names the jti, never the token.
      expect(store.keys()).toEqual([revocationKey(minted.jti)]);
      expect(JSON.stringify([store.keys(), store.values()])).not.toContain(minted.token.split('.')[2]);
      revocations.close();
    },
  );
});

describe('through the broker: revoking one spelling revokes the token', () => {
  let api: ApiServer;
  let harness: FakeUpstreamBroker;
  /** Every spelling sent; none may appear in a log line. */
  const sent: string[] = [];

  beforeAll(async () => {
    api = await startEchoApi();
    harness = await startBroker({ upstream: 'fake', env: { UPSTREAM_API_URL: `${api.origin}/` } });
  });

  afterAll(async () => {
    await harness?.close();
    await api?.close();
  });

  const mint = () => harness.clientToken(origin);
  const proxied = (token: string) =>
    harness.request({ path: '/api/proxy/data', headers: { origin, 'x-client-token': token } });
  const backend = (path: string, token: string) =>
    harness.request({
      method: 'POST',
      path,
      headers: {
        authorization: `Bearer ${harness.apiKey}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }).toString(),
    });

  it('when a respelled token is used, introspected or revoked, then it is refused, and the minted token still works until it is revoked', async () => {
    const token = await mint();
    const spellings = signatureSpellings(token).map((spelling) =>
      registerSecret('jti test respelling', spelling),
    );
    expect(spellings).toHaveLength(15);
    sent.push(token, ...spellings);
    const before = api.requests.length;
    for (const spelling of spellings) {
      const answer = await proxied(spelling);
      expect(answer.status).toBe(401);
      expect(JSON.parse(answer.body)).toMatchObject({
        code: 'invalid_client_token',
        detail: 'the client token is not a compact JWS in canonical base64url',
      });
      expectNoSecrets(answer.body, [...harness.secrets(), spelling]);
      const introspected = await backend('/api/client-token/introspect', spelling);
      expect(JSON.parse(introspected.body)).toEqual({ active: false });
    }
    expect(api.requests.length).toBe(before);

    // A respelling names no token: revoking it revokes nothing.
    expect((await backend('/api/client-token/revoke', spellings[7] as string)).status).toBe(200);
    expect((await proxied(token)).status).toBe(200);

    expect((await backend('/api/client-token/revoke', token)).status).toBe(200);
    const answer = await proxied(token);
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'token_revoked' });
  });

  it('when the revocations are done, then no log line holds a token', () => {
    expect(sent).toHaveLength(16);
    expectNoSecrets(JSON.stringify(harness.logs.lines()), [...harness.secrets(), ...sent], 'log');
    const revokes = harness.logs.lines().filter((line) => line.path === '/api/client-token/revoke');
    expect(revokes).toHaveLength(2);
  });
});
