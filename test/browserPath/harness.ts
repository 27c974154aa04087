import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { type Broker, createBroker } from '../../src/broker.js';
import { type Clock, systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { type CapturedLogger, captureLogs, registerSecret } from '../support/logs.js';
import type { TestAuthServer } from '../support/oidcProvider.js';

/** One answer the broker wrote, as seen on its own socket (the browser may hide it behind CORS). */
export interface WireAnswer {
  method: string;
  url: string;
  origin: string | undefined;
  status: number;
  /** The problem+json `code`, when the answer was an error. */
  code: string | undefined;
}

export interface ListeningBroker {
  /** `http://127.0.0.1:<port>`: the broker's own origin. */
  url: string;
  port: number;
  apiKey: string;
  broker: Broker;
  logs: CapturedLogger;
  /** Every answer written, in order of completion. */
  answers: WireAnswer[];
  close(): Promise<void>;
}

export interface StartBrokerOptions {
  auth: TestAuthServer;
  /** Extra settings; they override the defaults (e.g. `UPSTREAM_API_URL`, `CLIENT_TOKEN_BIND_IP`). */
  env?: Record<string, string>;
  /** Computes settings that need the broker's own origin (the demo page allows it). */
  envFor?: (brokerUrl: string) => Record<string, string>;
  clock?: Clock;
  demo?: boolean;
}

/**
 * A broker built as main.ts builds it (loadConfig + createBroker) on a real socket on 127.0.0.1, against
 * a real oidc-provider. The socket listens before the config is made, so settings may name the broker's
 * own origin.
 */
export async function startListeningBroker(options: StartBrokerOptions): Promise<ListeningBroker> {
  const { auth } = options;
  const answers: WireAnswer[] = [];
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const apiKey = registerSecret('broker api key', `key-${randomBytes(24).toString('base64url')}`);
  const config = loadConfig({
    NODE_ENV: 'test',
    UPSTREAM_TOKEN_URL: auth.tokenUrl,
    UPSTREAM_CLIENT_ID: auth.clientId,
    UPSTREAM_CLIENT_SECRET: auth.clientSecret,
    UPSTREAM_RESOURCE: auth.resource,
    UPSTREAM_SCOPE: auth.scope,
    BROKER_API_KEYS: apiKey,
    ...options.env,
    ...options.envFor?.(url),
  });
  const logs = captureLogs('debug');
  const broker = await createBroker({
    config,
    logger: logs.logger,
    clock: options.clock ?? systemClock,
    demo: options.demo ?? false,
  });
  server.on('request', (req, res) => {
    // Read now: Express rewrites `req.url` under a mount point.
    const seen = { method: req.method ?? '', url: req.url ?? '', origin: req.headers.origin };
    res.on('finish', () => {
      // The app's error handler leaves the code it answered in `res.locals` (http/problem.ts).
      const locals = (res as { locals?: { problemCode?: string } }).locals;
      answers.push({ ...seen, status: res.statusCode, code: locals?.problemCode });
    });
    broker.app(req, res);
  });
  return {
    url,
    port,
    apiKey,
    broker,
    logs,
    answers,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await broker.close();
    },
  };
}

/** A private Ed25519 JWK Set with one key, as `SIGNING_KEYS` takes it; its private part is registered. */
export async function signingKeySet(kid: string = randomUUID()): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('client token signing key', jwk.d as string);
  return JSON.stringify({ keys: [{ ...jwk, kid, alg: 'EdDSA', use: 'sig' }] });
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json(): Record<string, unknown>;
  /** From sending the request to the answer's last byte. */
  ms: number;
}

/**
 * Sends one request with a raw target (node:http neither normalises `..` nor re-encodes `%2e`, as fetch
 * and supertest's URL handling would) on a fresh connection.
 */
export function call(
  baseUrl: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<Answer> {
  const started = performance.now();
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({
      host: hostname,
      port,
      path,
      method: options.method ?? 'GET',
      headers: options.headers,
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: () => body.toString('utf8'),
          json: () => JSON.parse(body.toString('utf8')) as Record<string, unknown>,
          ms: performance.now() - started,
        });
      });
    });
    req.end(options.body);
  });
}

/** Polls until `condition` holds; fails the test after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
