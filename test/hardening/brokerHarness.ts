import { randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { expect } from 'vitest';
import { type Broker, createBroker } from '../../src/broker.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import type { RenewalPolicy } from '../../src/upstream/renewalPolicy.js';
import { encodings } from '../support/leaks.js';
import { type CapturedLogger, captureLogs, registerSecret } from '../support/logs.js';
import {
  type Behaviour,
  type FakeTokenServer,
  reply,
  startFakeTokenServer,
} from '../support/oauthServers.js';

/** Timings short enough that a fault and its recovery fit in a test, with the same shape as production. */
export const fastPolicy: Partial<RenewalPolicy> = {
  minMarginMs: 0,
  backoffBaseMs: 50,
  backoffCapMs: 200,
  breakerThreshold: 3,
  breakerOpenMs: 300,
  rejectedProbeMs: 300,
};

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Wall-clock time from sending to the last body byte. */
  ms: number;
}

export interface BrokerUnderTest {
  /** `http://127.0.0.1:<port>` of the listening broker. */
  url: string;
  broker: Broker;
  upstream: FakeTokenServer;
  logs: CapturedLogger;
  apiKey: string;
  clientSecret: string;
  /** Every upstream access token the fake server handed out. */
  issued: string[];
  /** Every secret the broker holds or was given; no answer except an upstream-token 200 may hold one. */
  secrets(): string[];
  request(options: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
  }): Promise<Answer>;
  close(): Promise<void>;
}

/** Answers a token request with a fresh registered access token (and records it in `issued`). */
export function issueToken(
  issued: string[],
  extra: Record<string, unknown> = { expires_in: 3600 },
): Behaviour {
  return (_req, res) => {
    const token = registerSecret(
      'fake upstream access token',
      `upstream-at-${randomBytes(18).toString('base64url')}`,
    );
    issued.push(token);
    reply(res, 200, { access_token: token, token_type: 'Bearer', ...extra });
  };
}

/**
 * A broker built exactly as `main.ts` builds it (`loadConfig` + `createBroker`), listening on 127.0.0.1
 * port 0, whose upstream token endpoint is a fake server the test switches between behaviours.
 */
export async function startBrokerUnderTest(
  options: {
    env?: Record<string, string>;
    cachePolicy?: Partial<RenewalPolicy>;
    behaviour?: (issued: string[]) => Behaviour;
  } = {},
): Promise<BrokerUnderTest> {
  const issued: string[] = [];
  const upstream = await startFakeTokenServer((options.behaviour ?? issueToken)(issued));
  const apiKey = registerSecret('broker api key', `bk-${randomBytes(24).toString('base64url')}`);
  const clientSecret = registerSecret(
    'upstream client secret',
    `cs-${randomBytes(24).toString('base64url')}`,
  );
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'debug',
    ALLOWED_ORIGINS: 'https://app.example.com,https://*.example.org',
    BROKER_API_KEYS: apiKey,
    UPSTREAM_TOKEN_URL: upstream.tokenUrl,
    UPSTREAM_CLIENT_ID: 'broker-test-client',
    UPSTREAM_CLIENT_SECRET: clientSecret,
    UPSTREAM_TIMEOUT_MS: '400',
    UPSTREAM_DEFAULT_TTL: '300',
    // These suites hammer the routes on purpose; the limits have their own tests.
    RATE_LIMIT_CLIENT_TOKEN: 'off',
    RATE_LIMIT_CLAIM: 'off',
    RATE_LIMIT_API_KEY_FAILURES: 'off',
    RATE_LIMIT_PROXY: 'off',
    ...options.env,
  });
  const logs = captureLogs();
  const broker = await createBroker({
    config,
    logger: logs.logger,
    clock: systemClock,
    cachePolicy: options.cachePolicy ?? fastPolicy,
  });
  const server: Server = createServer(broker.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const pool = new Pool(url, { connections: 16, pipelining: 1 });
  return {
    url,
    broker,
    upstream,
    logs,
    apiKey,
    clientSecret,
    issued,
    secrets: () => [apiKey, clientSecret, ...issued],
    async request({ method = 'GET', path, headers = {}, body }) {
      const started = performance.now();
      const answer = await pool.request({ method, path, headers, ...(body === undefined ? {} : { body }) });
      const text = await answer.body.text();
      return {
        status: answer.statusCode,
        headers: answer.headers,
        body: text,
        ms: performance.now() - started,
      };
    },
    async close() {
      await pool.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await broker.close();
      await upstream.close();
    },
  };
}

/** Fails when `text` holds any of `secrets` in any spelling the code could produce. */
export function expectNoSecrets(text: string, secrets: readonly string[], where = 'answer'): void {
  for (const secret of secrets) {
    for (const spelling of encodings(secret)) {
      if (spelling.length < 12) continue;
      expect(text.includes(spelling), `${where} holds a secret`).toBe(false);
    }
  }
}

/** Leaves a response hanging: headers only, no body, until the server closes. */
export function hang(_req: unknown, _res: ServerResponse): void {}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
