import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { Agent, request } from 'undici';
import { type BrokerProcess, startBrokerProcess } from '../support/brokerProcess.js';
import { registerSecret } from '../support/logs.js';
import { type FakeTokenServer, mintToken, reply, startFakeTokenServer } from '../support/oauthServers.js';
import { sleep } from '../support/waiting.js';

/**
 * A fleet of broker processes for the chaos suites: one environment (keys, upstream, prefix), a Redis
 * topology given as settings, and the calls the suites make on it. Timings are shortened by settings
 * only (command timeout, lock lease), never by reaching into the broker.
 */

export const origin = 'http://app.test';
const dispatcher = new Agent({ connections: 32, pipelining: 1, headersTimeout: 20_000 });
export interface Answer {
  status: number;
  /** How long the answer took, in ms. */
  ms: number;
  text: string;
  json(): Record<string, unknown>;
}

export async function call(
  url: string,
  {
    method = 'GET',
    headers = {},
    body,
  }: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const started = Date.now();
  const answer = await request(url, { method, headers, body, dispatcher });
  const text = await answer.body.text();
  return { status: answer.statusCode, ms: Date.now() - started, text, json: () => JSON.parse(text) };
}

export interface UpstreamLog {
  server: FakeTokenServer;
  /** When each token request arrived (ms since the epoch). */
  requestedAt: number[];
  issued: string[];
}

/** A token endpoint answering every request with a fresh token of `lifetimeSeconds`. */
export async function startUpstream(lifetimeSeconds: number): Promise<UpstreamLog> {
  const requestedAt: number[] = [];
  const issued: string[] = [];
  const server = await startFakeTokenServer((_req, res) => {
    requestedAt.push(Date.now());
    const accessToken = mintToken('chaos-access');
    issued.push(accessToken);
    reply(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: lifetimeSeconds });
  });
  return { server, requestedAt, issued };
}

export interface Fleet {
  env: Record<string, string>;
  apiKey: string;
  brokers: BrokerProcess[];
  start(overrides?: Record<string, string>, startTimeoutMs?: number): Promise<BrokerProcess>;
  upstreamToken(broker: BrokerProcess): Promise<Answer>;
  /** A client token minted by `broker` for the test origin. */
  clientToken(broker: BrokerProcess): Promise<string>;
  revoke(broker: BrokerProcess, token: string): Promise<Answer>;
  isActive(broker: BrokerProcess, token: string): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * The environment every replica of one fleet shares, on the given Redis settings; `settings` may also
 * replace any other default of the fleet (an empty value unsets it, as for the broker).
 */
export async function createFleet(
  upstreamTokenUrl: string,
  settings: Record<string, string>,
): Promise<Fleet> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  registerSecret('chaos signing key', jwk.d as string);
  const apiKey = registerSecret('chaos api key', `chaos-${randomBytes(24).toString('base64url')}`);
  const env = {
    LOG_LEVEL: 'debug',
    REDIS_KEY_PREFIX: `tb-chaos-${randomBytes(6).toString('hex')}:`,
    CACHE_ENCRYPTION_KEY: registerSecret('chaos cache key', randomBytes(32).toString('base64')),
    SIGNING_KEYS: JSON.stringify({ keys: [{ ...jwk, kid: randomUUID(), alg: 'EdDSA', use: 'sig' }] }),
    BROKER_API_KEYS: apiKey,
    ALLOWED_ORIGINS: origin,
    UPSTREAM_TOKEN_URL: upstreamTokenUrl,
    UPSTREAM_CLIENT_ID: 'chaos-client',
    UPSTREAM_CLIENT_SECRET: registerSecret('chaos secret', `secret-${randomBytes(24).toString('base64url')}`),
    RATE_LIMIT_CLIENT_TOKEN: '100000/minute',
    ...settings,
  };
  const brokers: BrokerProcess[] = [];
  const backend = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/x-www-form-urlencoded' };
  return {
    env,
    apiKey,
    brokers,
    async start(overrides = {}, startTimeoutMs?: number) {
      const broker = await startBrokerProcess({ ...env, ...overrides }, startTimeoutMs);
      brokers.push(broker);
      return broker;
    },
    upstreamToken: (broker) =>
      call(`${broker.url}/api/upstream-token`, { headers: { authorization: `Bearer ${apiKey}` } }),
    async clientToken(broker) {
      const answer = await call(`${broker.url}/api/client-token`, { method: 'POST', headers: { origin } });
      if (answer.status !== 200) throw new Error(`client token refused with ${answer.status}`);
      return registerSecret('chaos client token', answer.json().token as string);
    },
    revoke: (broker, token) =>
      call(`${broker.url}/api/client-token/revoke`, {
        method: 'POST',
        headers: backend,
        body: `token=${token}`,
      }),
    async isActive(broker, token) {
      const answer = await call(`${broker.url}/api/client-token/introspect`, {
        method: 'POST',
        headers: backend,
        body: `token=${token}`,
      });
      if (answer.status !== 200) throw new Error(`introspection answered ${answer.status}`);
      return answer.json().active === true;
    },
    async stop() {
      await Promise.all(brokers.map((broker) => broker.stop()));
    },
  };
}

/** Polls `check` until it holds or `withinMs` passes; returns whether it held. */
export async function eventually(check: () => Promise<boolean>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

/** Milliseconds between consecutive upstream token requests. */
export const gaps = (times: number[]) => times.slice(1).map((at, index) => at - (times[index] as number));

/** The `jti` of a client token (its payload is not secret; the token is). */
export const jtiOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).jti as string;

/** Resolves with the first log line of `broker` whose message starts with `message`, logged after `since`. */
export const logAfter = (broker: BrokerProcess, message: string, since: number, timeoutMs = 15_000) =>
  broker.waitForLine(
    (line) => String(line.msg).startsWith(message) && Date.parse(String(line.time)) >= since,
    timeoutMs,
  );
