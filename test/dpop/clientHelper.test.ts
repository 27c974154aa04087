import { webcrypto } from 'node:crypto';
import {
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  EmbeddedJWK,
  type JWK,
  jwtVerify,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerClientEvent, createBrokerClient, createDpopSigner } from '../../src/browser/client.js';
import { type ApiBroker, appOrigin, startBroker } from '../support/broker.js';
import { ath, dpopEnv } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';

let broker: ApiBroker;
beforeAll(async () => {
  broker = await startBroker({ api: 'verifying', env: dpopEnv });
});
afterAll(async () => {
  await broker?.close();
});

interface Sent {
  url: string;
  method: string;
  headers: Headers;
}

/**
 * The helper as a page on `appOrigin` runs it: Node's fetch sends no `Origin`, so it is added here, as
 * the browser would. `tamper` may rewrite a request's headers before it leaves.
 */
function pageClient(tamper?: (sent: Sent, index: number) => void) {
  const sent: Sent[] = [];
  const events: BrokerClientEvent[] = [];
  const client = createBrokerClient({
    baseUrl: broker.url,
    dpop: true,
    autoRefresh: false,
    onEvent: (event) => events.push(event),
    fetch: async (url, init) => {
      const headers = new Headers(init.headers);
      headers.set('origin', appOrigin);
      const request = { url, method: String(init.method ?? 'GET'), headers };
      tamper?.(request, sent.length);
      sent.push(request);
      const response = await fetch(url, { ...init, headers: request.headers });
      if (url.endsWith('/api/client-token') && response.ok) {
        registerSecret('helper dpop token', ((await response.clone().json()) as { token: string }).token);
      }
      return response;
    },
  });
  return { client, sent, events };
}

describe('browser helper with dpop: true', () => {
  it('when the page calls the API, then the token is DPoP-bound to the helper key and each call carries its own proof', async () => {
    const { client, sent } = pageClient();
    const first = await client.fetch('hello?page=1');
    const second = await client.fetch('/hello', { method: 'post', body: '{}' });
    expect([first.status, second.status]).toEqual([200, 200]);

    const info = client.tokenInfo();
    expect(info?.tokenType).toBe('DPoP');
    const token = info?.token ?? '';
    const [tokenRequest, call1, call2] = sent;
    const proofs = sent.map((request) => request.headers.get('dpop') ?? '');
    const jwk = decodeProtectedHeader(proofs[0] ?? '').jwk as JWK;
    expect(Object.keys(jwk).sort()).toEqual(['crv', 'kty', 'x', 'y']);
    expect(decodeJwt(token).cnf).toEqual({ jkt: await calculateJwkThumbprint(jwk, 'sha256') });

    expect(tokenRequest?.headers.get('authorization')).toBeNull();
    expect(decodeJwt(proofs[0] ?? '')).toMatchObject({ htm: 'POST', htu: `${broker.url}/api/client-token` });
    expect(decodeJwt(proofs[0] ?? '').ath).toBeUndefined();
    for (const call of [call1, call2]) expect(call?.headers.get('authorization')).toBe(`DPoP ${token}`);
    expect(decodeJwt(proofs[1] ?? '')).toMatchObject({
      htm: 'GET',
      htu: `${broker.url}/api/proxy/hello`,
      ath: ath(token),
    });
    // fetch upper-cases `post`, so the proof must name `POST`.
    expect(decodeJwt(proofs[2] ?? '')).toMatchObject({ htm: 'POST', htu: `${broker.url}/api/proxy/hello` });
    const jtis = proofs.map((proof) => decodeJwt(proof).jti);
    expect(new Set(jtis).size).toBe(3);
  });

  it('when the broker refuses a proof, then the helper retries once with a fresh proof and the same token', async () => {
    let stale: string | undefined;
    const { client, sent, events } = pageClient((request, index) => {
      // The first proxy call carries a proof that was already used: a replay.
      if (index === 1) stale = request.headers.get('dpop') ?? undefined;
      if (index === 2 && stale) request.headers.set('dpop', stale);
    });
    await client.getToken();
    expect((await client.fetch('hello')).status).toBe(200);
    const response = await client.fetch('hello');
    expect(response.status).toBe(200);
    expect(events.filter((event) => event.type === 'retry')).toEqual([
      { type: 'retry', code: 'invalid_dpop_proof', url: `${broker.url}/api/proxy/hello` },
    ]);
    expect(sent.filter((request) => request.url.endsWith('/api/client-token'))).toHaveLength(1);
  });
});

describe('DPoP signer', () => {
  it('when it makes a proof, then jose verifies it with the embedded public jwk as ES256 dpop+jwt', async () => {
    const signer = createDpopSigner({ now: () => Date.UTC(2026, 0, 1) });
    const proof = await signer.proof('GET', 'https://broker.example.com/api/proxy/a?b=c#d', 'token-1');
    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ['ES256'],
      currentDate: new Date(Date.UTC(2026, 0, 1)),
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(protectedHeader.jwk).toEqual(await signer.publicJwk());
    expect(payload).toMatchObject({
      htm: 'GET',
      htu: 'https://broker.example.com/api/proxy/a',
      iat: Date.UTC(2026, 0, 1) / 1000,
      ath: ath('token-1'),
    });
  });

  it('when the key is made, then it is non-extractable and only the public key is ever exported', async () => {
    const calls: { generateExtractable?: boolean; exported: string[] } = { exported: [] };
    const subtle = webcrypto.subtle;
    const recording = {
      getRandomValues: <T extends ArrayBufferView>(array: T) =>
        webcrypto.getRandomValues(array as never) as T,
      subtle: {
        generateKey: (algorithm: EcKeyGenParams, extractable: boolean, usages: KeyUsage[]) => {
          calls.generateExtractable = extractable;
          return subtle.generateKey(algorithm, extractable, usages);
        },
        exportKey: (format: 'jwk', key: CryptoKey) => {
          calls.exported.push(key.type);
          return subtle.exportKey(format, key);
        },
        sign: subtle.sign.bind(subtle),
        digest: subtle.digest.bind(subtle),
      },
    } as unknown as Crypto;
    const signer = createDpopSigner({ crypto: recording });
    await signer.proof('POST', 'https://broker.example.com/api/client-token');
    await signer.proof('GET', 'https://broker.example.com/api/proxy/x', 't');
    expect(calls).toEqual({ generateExtractable: false, exported: ['public'] });
    expect(Object.keys(await signer.publicJwk()).sort()).toEqual(['crv', 'kty', 'x', 'y']);
  });
});
