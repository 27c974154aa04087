import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inject, onTestFinished, TestRunner } from 'vitest';
import { registerSecret } from './logs.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxLoader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;

export interface BrokerProcess {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  port: number;
  child: ChildProcess;
  /** Every log line so far, parsed. */
  lines(): Record<string, unknown>[];
  /** Resolves with the first log line (already written or still to come) that `match` accepts. */
  waitForLine(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL: no drain, no lock release, as a crashed pod. */
  kill(): Promise<void>;
}

/**
 * The settings a broker process against a test token endpoint starts from: debug logs (every line,
 * probes' access lines included), `origin` allowed, a fresh broker API key (`apiKey`) and client secret,
 * both registered for the leak check. A test adds its own settings to `env`.
 */
export function brokerProcessEnv({
  tokenUrl,
  clientId,
  origin,
}: {
  tokenUrl: string;
  clientId: string;
  origin: string;
}): { env: Record<string, string>; apiKey: string } {
  const apiKey = registerSecret('broker api key', `bk-${randomBytes(24).toString('base64url')}`);
  const env = {
    LOG_LEVEL: 'debug',
    ALLOWED_ORIGINS: origin,
    BROKER_API_KEYS: apiKey,
    UPSTREAM_TOKEN_URL: tokenUrl,
    UPSTREAM_CLIENT_ID: clientId,
    UPSTREAM_CLIENT_SECRET: registerSecret(
      'upstream client secret',
      `cs-${randomBytes(24).toString('base64url')}`,
    ),
  };
  return { env, apiKey };
}

/**
 * A real broker process (`node --import tsx src/main.ts`) on 127.0.0.1 and an OS-chosen port, with only
 * the given environment (plus PATH). Its log lines are parsed for assertions and appended to the run's
 * log file, so the whole-run secret-leak scan covers them too. Like `startBroker` (./broker.ts): started
 * inside a test, it is killed when the test finishes; started in `beforeAll`, stop it in `afterAll`.
 */
export async function startBrokerProcess(
  env: Record<string, string>,
  startTimeoutMs = 45_000,
): Promise<BrokerProcess> {
  const child = spawn(process.execPath, ['--import', tsxLoader, join(root, 'src/main.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logFile = join(inject('leakDir'), 'logs.ndjson');
  const parsed: Record<string, unknown>[] = [];
  const waiters = new Set<{
    match: (line: Record<string, unknown>) => boolean;
    resolve: (line: Record<string, unknown>) => void;
  }>();
  let stderr = '';
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const complete = buffered.split('\n');
    buffered = complete.pop() ?? '';
    for (const text of complete.filter(Boolean)) {
      appendFileSync(logFile, `${text}\n`);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      parsed.push(line);
      for (const waiter of waiters) {
        if (!waiter.match(line)) continue;
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
    appendFileSync(logFile, chunk);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
  };
  if (TestRunner.getCurrentTest()) onTestFinished(() => signal('SIGKILL'));

  const waitForLine = (match: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000) => {
    const seen = parsed.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const waiter = { match, resolve };
      waiters.add(waiter);
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr.slice(0, 500)}`));
      }, timeoutMs);
      void exited.then(() => {
        if (!waiters.has(waiter)) return;
        clearTimeout(timer);
        waiters.delete(waiter);
        reject(new Error(`broker exited before the log line; stderr: ${stderr.slice(0, 500)}`));
      });
      const settle = waiter.resolve;
      waiter.resolve = (line) => {
        clearTimeout(timer);
        settle(line);
      };
    });
  };

  const listening = await waitForLine((line) => line.msg === 'token-broker listening', startTimeoutMs).catch(
    async (error: unknown) => {
      await signal('SIGKILL');
      throw error;
    },
  );
  const port = Number(listening.port);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    lines: () => [...parsed],
    waitForLine,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
  };
}
