import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  base64url,
  calculateJwkThumbprint,
  createRemoteJWKSet,
  exportJWK,
  generateKeyPair,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import { type Broker, createBroker } from '../../src/broker.js';
import { type Clock, systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { type ApiServer, startApiServer } from '../support/apiServers.js';
import { type CapturedLogger, captureLogs, registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

/** A key pair as a DPoP client holds it: the private key never leaves jose, the public JWK goes in proofs. */
export interface ProofKey {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

export async function proofKey(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const jwk: JWK = y === undefined ? { kty, crv, x } : { kty, crv, x, y };
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

export function ath(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export interface ProofOptions {
  htm: string;
  htu: string;
  /** Seconds; default now. */
  iat?: number;
  jti?: string;
  ath?: string;
  /** Replaces the protected header entirely (typ, alg and jwk included). */
  header?: Record<string, unknown>;
  /** Signs with this key while the header names `key.jwk`. */
  signWith?: CryptoKey;
}

/** A DPoP proof (RFC 9449 §4.2) made the way a correct client makes one, unless told otherwise. */
export function makeProof(key: ProofKey, options: ProofOptions): Promise<string> {
  const alg = key.jwk.kty === 'OKP' ? 'EdDSA' : 'ES256';
  const payload = {
    jti: options.jti ?? randomBytes(16).toString('base64url'),
    htm: options.htm,
    htu: options.htu,
    iat: options.iat ?? Math.floor(Date.now() / 1000),
    ...(options.ath !== undefined ? { ath: options.ath } : {}),
  };
  const header = options.header ?? { typ: 'dpop+jwt', alg, jwk: key.jwk };
  return new SignJWT(payload)
    .setProtectedHeader(header as { alg: string })
    .sign(options.signWith ?? key.privateKey);
}

/** A JWT with `alg: none` (RFC 7519 §6): a header, a payload and an empty signature. */
export function unsignedProof(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const encode = (value: unknown) => base64url.encode(JSON.stringify(value));
  return `${encode(header)}.${encode(payload)}.`;
}

export interface DpopBroker {
  /** `http://127.0.0.1:<port>` */
  url: string;
  broker: Broker;
  auth: TestAuthServer;
  /** The protected API behind `/api/proxy`: it accepts only the auth server's access tokens. */
  api: ApiServer;
  /** The broker API key, for introspection and revocation. */
  apiKey: string;
  logs: CapturedLogger;
  close(): Promise<void>;
}

export const appOrigin = 'https://app.example.com';

/**
 * The broker as main.ts builds it (loadConfig + createBroker) on a real socket, against a real
 * oidc-provider, proxying to a real protected API that verifies the upstream JWT access tokens.
 */
export async function startDpopBroker(
  env: Record<string, string> = {},
  options: { clock?: Clock; auth?: TestAuthServer } = {},
): Promise<DpopBroker> {
  const auth = options.auth ?? (await startTestAuthServer());
  const keys = createRemoteJWKSet(new URL(auth.jwksUri));
  const api = await startApiServer((req, res, _record, body) => {
    void body.then(async () => {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      try {
        await jwtVerify(token, keys, { issuer: auth.issuer, audience: auth.resource, typ: 'at+jwt' });
      } catch {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_token"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hello: 'from the API', headers: Object.keys(req.headers) }));
    });
  });
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const apiKey = registerSecret('broker api key', `key-${randomBytes(24).toString('base64url')}`);
  const config = loadConfig({
    NODE_ENV: 'test',
    UPSTREAM_TOKEN_URL: auth.tokenUrl,
    UPSTREAM_CLIENT_ID: auth.clientId,
    UPSTREAM_CLIENT_SECRET: auth.clientSecret,
    UPSTREAM_RESOURCE: auth.resource,
    UPSTREAM_SCOPE: auth.scope,
    UPSTREAM_API_URL: `${api.origin}/`,
    BROKER_API_KEYS: apiKey,
    ALLOWED_ORIGINS: appOrigin,
    CLIENT_TOKEN_BINDING: 'dpop',
    ...env,
  });
  const logs = captureLogs('info');
  const broker = await createBroker({ config, logger: logs.logger, clock: options.clock ?? systemClock });
  server.on('request', broker.app);
  return {
    url,
    broker,
    auth,
    api,
    apiKey,
    logs,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await broker.close();
      await api.close();
      if (!options.auth) await auth.close();
    },
  };
}

/** Asks `/api/client-token` for a token with a proof by `key`; registers the token with the leak check. */
export async function dpopToken(broker: DpopBroker, key: ProofKey): Promise<string> {
  const htu = `${broker.url}/api/client-token`;
  const response = await fetch(htu, {
    method: 'POST',
    headers: { origin: appOrigin, dpop: await makeProof(key, { htm: 'POST', htu }) },
  });
  const body = (await response.json()) as { token?: string; tokenType?: string };
  if (response.status !== 200 || body.tokenType !== 'DPoP' || !body.token) {
    throw new Error(`no DPoP token: ${response.status} ${JSON.stringify(body)}`);
  }
  return registerSecret('dpop client token', body.token);
}
