import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Pool } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { brokerProcessEnv, startBrokerProcess } from '../support/brokerProcess.js';
import { registerSecret } from '../support/logs.js';
import { type FakeTokenServer, reply, startFakeTokenServer } from '../support/oauthServers.js';
import { waitFor } from '../support/waiting.js';

const origin = 'https://app.example.com';
/** How long the token endpoint takes, so `/readyz` is still in flight when SIGTERM arrives. */
const slowUpstreamMs = 1_200;
const draining = 'shutting down: draining in-flight requests';

/** What happened to one load-generator request. */
type Outcome =
  | { kind: 'answered'; status: number; startedAt: number; endedAt: number }
  /** No response byte arrived: refused, or the connection closed before an answer began. */
  | { kind: 'unanswered'; code: string; startedAt: number }
  /** The answer began and then broke: never acceptable. */
  | { kind: 'broken'; code: string; startedAt: number };

/** Failures that happen before any answer byte: the request never reached a handler. */
const connectionLevel = new Set(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']);

const errorCode = (error: unknown) => String((error as { code?: unknown }).code ?? (error as Error).name);

/** Keeps `workers` requests in flight until the broker stops answering; bounded by `maxRequests`. */
async function generateLoad(pool: Pool, workers: number, maxRequests: number, outcomes: Outcome[]) {
  let stopped = false;
  const worker = async (index: number) => {
    while (!stopped && outcomes.length < maxRequests) {
      const startedAt = performance.now();
      const path = index % 2 === 0 ? '/api/client-token' : '/healthz';
      let answer: Awaited<ReturnType<Pool['request']>>;
      try {
        answer = await pool.request({ method: 'GET', path, headers: { origin } });
      } catch (error) {
        outcomes.push({ kind: 'unanswered', code: errorCode(error), startedAt });
        if (errorCode(error) === 'ECONNREFUSED') stopped = true;
        continue;
      }
      try {
        const body = await answer.body.text();
        if (path === '/api/client-token' && answer.statusCode === 200) JSON.parse(body);
        outcomes.push({ kind: 'answered', status: answer.statusCode, startedAt, endedAt: performance.now() });
      } catch (error) {
        outcomes.push({ kind: 'broken', code: errorCode(error), startedAt });
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, index) => worker(index)));
}

let upstream: FakeTokenServer | undefined;
afterAll(async () => {
  await upstream?.close();
});

describe('graceful shutdown under load', () => {
  it('when SIGTERM arrives under load with a slow request in flight, then the broker stops accepting, answers every accepted request in full, and exits 0', async () => {
    const accessToken = registerSecret(
      'fake upstream access token',
      `at-${randomBytes(18).toString('base64url')}`,
    );
    upstream = await startFakeTokenServer((_req, res) => {
      setTimeout(() => reply(res, 200, { access_token: accessToken, expires_in: 3600 }), slowUpstreamMs);
    });
    // Its debug logs hold the probes' (/healthz, /readyz) access lines: every access line is counted below.
    const { env } = brokerProcessEnv({ tokenUrl: upstream.tokenUrl, clientId: 'shutdown-test', origin });
    const broker = await startBrokerProcess({
      ...env,
      UPSTREAM_TIMEOUT_MS: '5000',
      SHUTDOWN_TIMEOUT_MS: '5000',
      RATE_LIMIT_CLIENT_TOKEN: 'off',
      RATE_LIMIT_CLAIM: 'off',
      RATE_LIMIT_API_KEY_FAILURES: 'off',
    });
    const { url, port } = broker;
    const pool = new Pool(url, { connections: 8 });
    const slowPool = new Pool(url, { connections: 1 });
    const outcomes: Outcome[] = [];
    const load = generateLoad(pool, 8, 50_000, outcomes);
    await waitFor(() => outcomes.length >= 200, 30_000);

    // Nobody holds an upstream token yet, so readiness waits on the slow token endpoint.
    const slowStarted = performance.now();
    const slow = slowPool.request({ method: 'GET', path: '/readyz' }).then(async (answer) => ({
      status: answer.statusCode,
      body: await answer.body.text(),
    }));
    // The slow request is in flight once the token endpoint has it (no replica asks it earlier).
    await waitFor(() => upstream?.requests.length === 1);
    const signalAt = performance.now();
    const answeredBeforeSignal = outcomes.filter((outcome) => outcome.kind === 'answered').length;
    const stopped = broker.stop();

    // Stops accepting: once the broker has taken the signal, a new connection is refused while the slow
    // request is still being served.
    await broker.waitForLine((line) => String(line.msg).includes(draining));
    const refused = await new Promise<string>((resolve) => {
      const socket: Socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (error) => resolve(errorCode(error)));
    });
    expect(refused).toBe('ECONNREFUSED');

    const slowAnswer = await slow;
    await stopped;
    const exitCode = broker.child.exitCode;
    const exitedAfterMs = performance.now() - signalAt;
    await load;
    await Promise.all([pool.close(), slowPool.close()]);
    const messages = broker.lines().map((line) => String(line.msg));

    // The in-flight slow request finished with a real answer, after the signal.
    expect(slowAnswer.status).toBe(200);
    expect(JSON.parse(slowAnswer.body)).toMatchObject({ status: 'ready' });
    expect(performance.now() - slowStarted).toBeGreaterThan(slowUpstreamMs - 100);
    expect(exitCode).toBe(0);
    // Out as soon as the slow answer is written, well before SHUTDOWN_TIMEOUT_MS (5 s) would force it.
    expect(exitedAfterMs).toBeLessThan(slowUpstreamMs + 3_000);

    const answered = outcomes.filter((outcome) => outcome.kind === 'answered');
    const broken = outcomes.filter((outcome) => outcome.kind === 'broken');
    const unanswered = outcomes.filter((outcome) => outcome.kind === 'unanswered');
    // The load was real. (Whether a load request happens to straddle the signal depends on scheduling;
    // the slow request above is the one that deterministically does.)
    expect(answeredBeforeSignal).toBeGreaterThan(100);
    // Every answer that began was complete and expected; none was cut mid-response.
    expect(broken).toEqual([]);
    expect(answered.filter((outcome) => outcome.status !== 200)).toEqual([]);
    // Every request sent before the signal was answered. One sent after it may find no broker: refused, or
    // its connection closed before any answer byte (queued in the kernel as the listener closed, or a
    // keep-alive socket closed as idle), which RFC 9112 §9.3.1 lets a client retry elsewhere.
    expect(unanswered.filter((outcome) => outcome.startedAt < signalAt)).toEqual([]);
    expect(unanswered.filter((outcome) => !connectionLevel.has(outcome.code))).toEqual([]);
    // Every request the broker accepted and logged reached the client: its count equals ours.
    const logged = messages.filter((msg) => msg === 'request').length;
    expect(logged).toBe(answered.length + 1);
    expect(messages.some((msg) => msg.includes(draining))).toBe(true);
    expect(messages).toContain('stopped');
    // A broker process under tsx takes seconds to start on a loaded machine.
  }, 60_000);
});
