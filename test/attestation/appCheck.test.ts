import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';

const project = '123456789012';
const issuer = `https://firebaseappcheck.googleapis.com/${project}`;
let appCheckKey: CryptoKey;
let otherKey: CryptoKey;
let jwksServer: Server;
let jwksUrl: string;
let jwksDown = false;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  appCheckKey = pair.privateKey;
  otherKey = (await generateKeyPair('RS256')).privateKey;
  registerSecret('app check private key', (await exportJWK(pair.privateKey)).d ?? '');
  const published: JWK = {
    ...(await exportJWK(pair.publicKey)),
    kid: 'app-check-1',
    alg: 'RS256',
    use: 'sig',
  };
  // App Check's key set, served on loopback as Google serves it.
  jwksServer = createServer((_req, res) => {
    if (jwksDown) {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [published] }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/v1/jwks`;
});

afterAll(async () => {
  jwksServer?.closeAllConnections();
  await new Promise((resolve) => jwksServer?.close(resolve));
});

/** An App Check token as Firebase issues one: RS256, `kid`, `iss`, `aud` [`projects/<number>`, `projects/<id>`]. */
async function appCheckToken(
  claims: { iss?: string; aud?: string[]; expiresIn?: string } = {},
  key: CryptoKey = appCheckKey,
): Promise<string> {
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'app-check-1' })
    .setIssuer(claims.iss ?? issuer)
    .setAudience(claims.aud ?? [`projects/${project}`, 'projects/my-app'])
    .setSubject(`1:${project}:web:${randomBytes(6).toString('hex')}`)
    .setIssuedAt()
    .setExpirationTime(claims.expiresIn ?? '1h')
    .sign(key);
  return registerSecret('app check token', token);
}

function brokerFor(): Promise<FakeUpstreamBroker> {
  return startBroker({
    upstream: 'fake',
    env: {
      CLIENT_TOKEN_ATTESTATION: 'app-check',
      CLIENT_TOKEN_ATTESTATION_JWKS_URL: jwksUrl,
      CLIENT_TOKEN_ATTESTATION_AUDIENCE: project,
      CLIENT_TOKEN_ATTESTATION_TIMEOUT_MS: '500',
    },
  });
}

async function mint(broker: FakeUpstreamBroker, proof: string) {
  const answer = await broker.request({
    method: 'POST',
    path: '/api/client-token',
    headers: { origin: appOrigin, attestation: proof },
  });
  return { status: answer.status, body: JSON.parse(answer.body) as { code?: string; detail?: string } };
}

describe('CLIENT_TOKEN_ATTESTATION=app-check', () => {
  it('when a valid App Check token comes, then a client token is minted, and the same App Check token is refused after', async () => {
    const broker = await brokerFor();
    const proof = await appCheckToken();
    expect((await mint(broker, proof)).status).toBe(200);
    const again = await mint(broker, proof);
    expect(again).toMatchObject({ status: 401, body: { code: 'attestation_failed' } });
    expect(again.body.detail).toContain('already used');
  });

  it.each([
    ['for another project', { aud: ['projects/999'] }, 'another project'],
    ['from another issuer', { iss: 'https://firebaseappcheck.googleapis.com/999' }, 'another project'],
    ['expired', { expiresIn: '-1m' }, 'expired'],
  ])('when the token is %s, then attestation_failed', async (_label, claims, detail) => {
    const broker = await brokerFor();
    const answer = await mint(broker, await appCheckToken(claims));
    expect(answer).toMatchObject({ status: 401, body: { code: 'attestation_failed' } });
    expect(answer.body.detail).toContain(detail);
  });

  it('when the token is signed by another key, or is no JWT at all, then attestation_failed', async () => {
    const broker = await brokerFor();
    const forged = await mint(broker, await appCheckToken({}, otherKey));
    expect(forged).toMatchObject({ status: 401, body: { code: 'attestation_failed' } });
    expect(forged.body.detail).toContain('not signed by App Check');
    expect((await mint(broker, 'not-a-jwt')).body.code).toBe('attestation_failed');
  });

  it('when the App Check key set cannot be fetched, then the broker fails closed', async () => {
    const broker = await brokerFor();
    jwksDown = true;
    try {
      const answer = await mint(broker, await appCheckToken());
      expect(answer).toMatchObject({ status: 401, body: { code: 'attestation_failed' } });
      expect(
        broker.logs.lines().find((line) => line.msg === 'request' && line.code === 'attestation_failed'),
      ).toMatchObject({
        reason: 'provider_unavailable',
      });
    } finally {
      jwksDown = false;
    }
  });
});
