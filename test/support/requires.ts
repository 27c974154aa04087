import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { promisify } from 'node:util';
import { waitForPing } from './redisServers.js';

/** Debian's Chromium, the one `chromium.ts` launches (never a downloaded browser). */
export const chromiumPath = '/usr/bin/chromium';

const run = promisify(execFile);

/** What a suite may need from the machine besides Node, and how to tell it is there. */
const parts = {
  chromium: async () => {
    await access(chromiumPath, constants.X_OK);
  },
  /** The shared Redis the store and fleet suites use (each with its own key prefix). */
  redis: async () => {
    await waitForPing(6379, 1_000);
  },
  /** The binaries the chaos suites run their private servers, sentinels and clusters with. */
  'redis-server': async () => {
    await Promise.all([run('redis-server', ['--version']), run('redis-cli', ['--version'])]);
  },
  /** The CLI the mutual-TLS suites issue their certificates with (certificates.ts). */
  openssl: async () => {
    await run('openssl', ['version']);
  },
};

export type Part = keyof typeof parts;

const described: Record<Part, string> = {
  chromium: `Chromium at ${chromiumPath}`,
  redis: 'Redis at 127.0.0.1:6379',
  'redis-server': 'the redis-server and redis-cli binaries on PATH',
  openssl: 'the openssl binary on PATH',
};

const checked = new Map<Part, Promise<string | undefined>>();

function check(part: Part): Promise<string | undefined> {
  let result = checked.get(part);
  if (!result) {
    result = parts[part]().then(
      () => undefined,
      (error: unknown) =>
        `${described[part]} (${error instanceof Error ? error.message.split('\n')[0] : error})`,
    );
    checked.set(part, result);
  }
  return result;
}

/**
 * Checks that the machine has what a suite needs, for `describe.skipIf(await missing(...))`. Resolves
 * to a message naming every part that is absent, and prints it, since vitest shows a skipped suite
 * without a reason; resolves to undefined when all are there. Under `CI=true` a missing part throws
 * instead, so that a runner without Redis or Chromium fails rather than passing with suites skipped.
 */
export async function missing(...needed: Part[]): Promise<string | undefined> {
  const absent = (await Promise.all(needed.map(check))).filter((reason) => reason !== undefined);
  if (absent.length === 0) return undefined;
  const message = `needs ${absent.join('; ')}`;
  if (process.env.CI === 'true') throw new Error(`${message}, which CI must provide`);
  console.warn(`skipped: this suite ${message}`);
  return message;
}
