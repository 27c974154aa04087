/**
 * The one way a test gets a listening broker: `startBroker(options)` builds it exactly as main.ts does
 * (loadConfig + createBroker) on a real socket on 127.0.0.1 and answers a handle. A real broker process
 * (`src/main.ts` in a child) is `startBrokerProcess` in ./brokerProcess.ts.
 *
 *   const broker = await startBroker({ upstream: 'fake', api: 'fixed', env: { CLIENT_TOKEN_TTL: '60' } });
 *   const answer = await broker.request({ path: '/api/proxy/x', headers: { authorization: `Bearer ${await broker.clientToken()}` } });
 *
 * What it starts (options):
 * - `upstream`: the token endpoint.
 *   - left out: a real oidc-provider, started here and closed with the broker (`handle.auth`).
 *   - a `TestAuthServer`: that shared provider, which the test closes (`handle.auth`).
 *   With either, ALLOWED_ORIGINS defaults to `appOrigin` and `https://*.apps.example.com`, logs to info.
 *   - `'fake'`: a scripted node:http token endpoint for upstream faults (`handle.upstream`): it hands out
 *     a fresh registered token per request (`issueToken`, or `behaviour(issued)`) until the test calls
 *     `upstream.setBehaviour`.
 *     ALLOWED_ORIGINS defaults to `appOrigin` and `https://*.example.org`, UPSTREAM_TIMEOUT_MS to 400,
 *     the renewal timings to `fastPolicy`, rate limits to off, logs to debug.
 * - `api`: the protected API behind `/api/proxy` (sets `UPSTREAM_API_URL`; `handle.api`).
 *   - an `ApiServer`: that one, which the test closes.
 *   - `'verifying'`: 200 only with the oidc upstream's JWT access tokens, else 401.
 *   - `'fixed'`: 200 `{"ok":true}` to everything (an echo would hand the upstream token back).
 * - `env`: settings over the defaults; `envFor(url)`: settings that need the broker's own origin (the
 *   socket listens before the config is made).
 * - `host`: the address to listen on (default `127.0.0.1`; `::1` for connections from IPv6 addresses).
 * - `clock`, `demo`, `cachePolicy`: passed to createBroker; `logLevel`: the captured logger's level.
 * - `reload`: watch and re-read the `*_FILE` settings (`broker.reloader`), with these overrides.
 *
 * What it records (handle):
 * - `answers`: every answer the broker wrote on its own socket (method, url, origin, status, problem
 *   `code`), as seen on the wire even when a browser hides it behind CORS.
 * - `logs`: every log line (also appended to the run's leak-check file).
 * - `issued` (fake upstream): every upstream access token handed out; `upstream.requests`: every token
 *   request the fake endpoint saw. `auth.tokenRequests()` (oidc upstream) counts them.
 * - `secrets()`: every secret the broker holds or was given (API key, client secret, issued tokens).
 * - `api.requests` (when `api` is given): every request the API saw.
 *
 * On the handle: `request()` sends through a keep-alive undici pool and times the answer;
 * `clientToken(origin = appOrigin)` mints (and registers) a client token through `/api/client-token`.
 * `proxy(token, path?)` sends a proxied GET with it from `appOrigin`.
 *
 * Cleanup: started inside a test, the broker closes itself when the test finishes (`onTestFinished`);
 * started in `beforeAll`, close it in `afterAll(() => broker.close())`. `close()` closes everything the
 * harness started (never what the test passed in) and may be called more than once.
 */
import { randomBytes } from 'node:crypto';
import { createServer, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool } from 'undici';
import { onTestFinished, TestRunner } from 'vitest';
import { type Broker, type BrokerDeps, createBroker } from '../../src/broker.js';
import { type Clock, systemClock } from '../../src/clock.js';
import { type Config, loadConfig } from '../../src/config/index.js';
import { limitServer, serverOptions } from '../../src/http/connectionCaps.js';
import type { RenewalPolicy } from '../../src/upstream/renewalPolicy.js';
import { type ApiServer, startFixedApi, startVerifyingApi } from './apiServers.js';
import { type CapturedLogger, captureLogs, registerSecret } from './logs.js';
import { type Behaviour, type FakeTokenServer, issueToken, startFakeTokenServer } from './oauthServers.js';
import { startTestAuthServer, type TestAuthServer } from './oidcProvider.js';

/** Timings short enough that a fault and its recovery fit in a test, with the same shape as production. */
export const fastPolicy: Partial<RenewalPolicy> = {
  minMarginMs: 0,
  backoffBaseMs: 50,
  backoffCapMs: 200,
  breakerThreshold: 3,
  breakerOpenMs: 300,
  rejectedProbeMs: 300,
};

/** One answer the broker wrote, as seen on its own socket (the browser may hide it behind CORS). */
export interface WireAnswer {
  method: string;
  url: string;
  origin: string | undefined;
  status: number;
  /** The problem+json `code`, when the answer was an error. */
  code: string | undefined;
  /**
   * Which lane answered: Express swaps the response's prototype for its own (dispatch/directRoutes.ts),
   * the direct lane leaves it a plain `http.ServerResponse`.
   */
  lane: 'direct' | 'express';
}

/** An answer to `handle.request()`. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Wall-clock time from sending to the last body byte. */
  ms: number;
}

type UpstreamOption = TestAuthServer | 'fake' | undefined;
type ApiOption = ApiServer | 'verifying' | 'fixed' | undefined;

export interface BrokerOptions {
  upstream?: UpstreamOption;
  api?: ApiOption;
  env?: Record<string, string>;
  envFor?: (brokerUrl: string) => Record<string, string>;
  host?: string;
  clock?: Clock;
  demo?: boolean;
  cachePolicy?: Partial<RenewalPolicy>;
  logLevel?: string;
  reload?: Omit<NonNullable<BrokerDeps['reload']>, 'env'>;
  /** The fake upstream's first behaviour, given the `issued` list (default: `issueToken`). */
  behaviour?: (issued: string[]) => Behaviour;
}

interface BrokerBase {
  /** `http://127.0.0.1:<port>` (or the `host` given): the broker's own origin. */
  url: string;
  port: number;
  broker: Broker;
  config: Config;
  apiKey: string;
  logs: CapturedLogger;
  answers: WireAnswer[];
  /** Every secret the broker holds or was given (API key, upstream secret, issued upstream tokens). */
  secrets(): string[];
  request(options: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
  }): Promise<Answer>;
  clientToken(origin?: string): Promise<string>;
  /** A proxied GET with a client token, from `appOrigin`: `/api/proxy/things` unless `path` says otherwise. */
  proxy(token: string, path?: string): Promise<Answer>;
  close(): Promise<void>;
}

export interface FakeUpstreamParts {
  upstream: FakeTokenServer;
  issued: string[];
}

/** The handle for `options`: `auth` for an oidc upstream, `upstream` and `issued` for a fake one, `api` when asked. */
export type BrokerHandle<U extends UpstreamOption = undefined, A extends ApiOption = undefined> = BrokerBase &
  (U extends 'fake' ? FakeUpstreamParts : { auth: TestAuthServer }) &
  ([A] extends [undefined] ? object : { api: ApiServer });

/** A broker against a real oidc-provider. */
export type OidcBroker = BrokerHandle;
/** A broker against a scripted token endpoint. */
export type FakeUpstreamBroker = BrokerHandle<'fake'>;
/** A broker against a real oidc-provider, with a protected API in front of it. */
export type ApiBroker = BrokerHandle<undefined, 'verifying'>;

export const appOrigin = 'https://app.example.com';

const oidcDefaults = { ALLOWED_ORIGINS: `${appOrigin},https://*.apps.example.com` };

const fakeUpstreamDefaults = {
  LOG_LEVEL: 'debug',
  ALLOWED_ORIGINS: `${appOrigin},https://*.example.org`,
  UPSTREAM_CLIENT_ID: 'broker-test-client',
  UPSTREAM_TIMEOUT_MS: '400',
  UPSTREAM_DEFAULT_TTL: '300',
  // These suites hammer the routes on purpose; the limits have their own tests.
  RATE_LIMIT_CLIENT_TOKEN: 'off',
  RATE_LIMIT_CLAIM: 'off',
  RATE_LIMIT_API_KEY_FAILURES: 'off',
  RATE_LIMIT_PROXY: 'off',
};

export async function startBroker<U extends UpstreamOption = undefined, A extends ApiOption = undefined>(
  options: BrokerOptions & { upstream?: U; api?: A } = {},
): Promise<BrokerHandle<U, A>> {
  const cleanups: (() => Promise<void>)[] = [];
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const errors: unknown[] = [];
      for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => errors.push(error));
      if (errors.length > 0) throw new AggregateError(errors, 'broker harness cleanup failed');
    })();
    return closing;
  };
  if (TestRunner.getCurrentTest()) onTestFinished(close);
  try {
    // The handle's type follows `options`; TypeScript cannot narrow a generic by the checks in start().
    return (await start(options, cleanups, close)) as unknown as BrokerHandle<U, A>;
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
}

async function start(
  options: BrokerOptions,
  cleanups: (() => Promise<void>)[],
  close: () => Promise<void>,
): Promise<BrokerBase & ({ auth: TestAuthServer } | FakeUpstreamParts) & { api?: ApiServer }> {
  const apiKey = registerSecret('broker api key', `key-${randomBytes(24).toString('base64url')}`);
  const issued: string[] = [];
  const secrets = [apiKey];
  let upstreamEnv: Record<string, string>;
  let parts: { auth: TestAuthServer } | FakeUpstreamParts;
  if (options.upstream === 'fake') {
    const upstream = await startFakeTokenServer((options.behaviour ?? issueToken)(issued));
    cleanups.push(() => upstream.close());
    const clientSecret = registerSecret(
      'upstream client secret',
      `cs-${randomBytes(24).toString('base64url')}`,
    );
    secrets.push(clientSecret);
    upstreamEnv = {
      ...fakeUpstreamDefaults,
      UPSTREAM_TOKEN_URL: upstream.tokenUrl,
      UPSTREAM_CLIENT_SECRET: clientSecret,
    };
    parts = { upstream, issued };
  } else {
    const auth = options.upstream ?? (await startTestAuthServer());
    if (!options.upstream) cleanups.push(() => auth.close());
    secrets.push(auth.clientSecret);
    upstreamEnv = {
      ...oidcDefaults,
      UPSTREAM_TOKEN_URL: auth.tokenUrl,
      UPSTREAM_CLIENT_ID: auth.clientId,
      UPSTREAM_CLIENT_SECRET: auth.clientSecret,
      UPSTREAM_RESOURCE: auth.resource,
      UPSTREAM_SCOPE: auth.scope,
    };
    parts = { auth };
  }

  const api = await startApi(options.api, 'auth' in parts ? parts.auth : undefined);
  if (api && api !== options.api) cleanups.push(() => api.close());

  const answers: WireAnswer[] = [];
  const server = createServer(serverOptions);
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  // Upgraded sockets (WebSockets) are no longer the server's to close: they are cut here.
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (_req, socket: Duplex) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
  });
  cleanups.push(async () => {
    server.closeAllConnections();
    for (const socket of upgraded) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const env = {
    NODE_ENV: 'test',
    ...upstreamEnv,
    ...(api ? { UPSTREAM_API_URL: `${api.origin}/` } : {}),
    BROKER_API_KEYS: apiKey,
    ...options.env,
    ...options.envFor?.(url),
  };
  const config = loadConfig(env);
  const logs = captureLogs(options.logLevel ?? (options.upstream === 'fake' ? 'debug' : 'info'));
  const broker = await createBroker({
    config,
    logger: logs.logger,
    clock: options.clock ?? systemClock,
    demo: options.demo ?? false,
    cachePolicy: options.cachePolicy ?? (options.upstream === 'fake' ? fastPolicy : undefined),
    ...(options.reload ? { reload: { ...options.reload, env } } : {}),
  });
  // Runs before the socket closes (cleanups run in reverse), so no request reaches a closed broker.
  cleanups.splice(cleanups.length - 1, 0, () => broker.close());
  // The connection caps, the idle timeout and the answers to what Node's parser refuses, as in main.ts.
  limitServer(server, broker.connectionCaps);
  server.on('request', (req, res) => {
    // Read now: Express rewrites `req.url` under a mount point.
    const seen = { method: req.method ?? '', url: req.url ?? '', origin: req.headers.origin };
    res.on('finish', () => {
      // The app's error handler leaves the code it answered in `res.locals` (http/problem.ts).
      const locals = (res as { locals?: { problemCode?: string } }).locals;
      const lane = Object.getPrototypeOf(res) === ServerResponse.prototype ? 'direct' : 'express';
      answers.push({ ...seen, status: res.statusCode, code: locals?.problemCode, lane });
    });
    broker.app(req, res);
  });
  server.on('upgrade', broker.upgrade);
  server.on('clientError', broker.clientError);

  let pool: Pool | undefined;
  cleanups.push(async () => {
    await pool?.close();
  });
  const request: BrokerBase['request'] = async ({ method = 'GET', path, headers = {}, body }) => {
    pool ??= new Pool(url, { connections: 16, pipelining: 1 });
    const started = performance.now();
    const answer = await pool.request({ method, path, headers, ...(body === undefined ? {} : { body }) });
    const text = await answer.body.text();
    return {
      status: answer.statusCode,
      headers: answer.headers,
      body: text,
      ms: performance.now() - started,
    };
  };
  const handle: BrokerBase = {
    url,
    port,
    broker,
    config,
    apiKey,
    logs,
    answers,
    secrets: () => [...secrets, ...issued],
    request,
    async clientToken(origin = appOrigin) {
      const answer = await request({ path: '/api/client-token', headers: { origin } });
      if (answer.status !== 200) throw new Error(`no client token: ${answer.status} ${answer.body}`);
      return registerSecret('client token', (JSON.parse(answer.body) as { token: string }).token);
    },
    proxy: (token, path = '/api/proxy/things') =>
      request({ path, headers: { origin: appOrigin, authorization: `Bearer ${token}` } }),
    close,
  };
  return { ...handle, ...parts, ...(api ? { api } : {}) };
}

function startApi(option: ApiOption, auth: TestAuthServer | undefined): Promise<ApiServer | undefined> {
  if (option === undefined || typeof option === 'object') return Promise.resolve(option);
  if (option === 'fixed') return startFixedApi();
  if (!auth) throw new Error("api: 'verifying' needs an oidc upstream");
  return startVerifyingApi(auth);
}
