import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { promisify } from 'node:util';
import { addLoopbackAddresses, testAddresses } from './loopbackAddresses.js';
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
    // A loaded machine can take a second to answer; only an absent Redis costs the whole wait.
    await waitForPing(6379, 5_000);
  },
  /** What the README's walk-through runs besides Node: a shell and the two tools its blocks call. */
  'walk-through tools': async () => {
    await Promise.all([run('bash', ['--version']), run('curl', ['--version']), run('openssl', ['version'])]);
  },
  /** The binaries the chaos suites run their private servers, sentinels and clusters with. */
  'redis-server': async () => {
    await Promise.all([run('redis-server', ['--version']), run('redis-cli', ['--version'])]);
  },
  /** The CLI the mutual-TLS suites issue their certificates with (certificates.ts). */
  openssl: async () => {
    await run('openssl', ['version']);
  },
  /** Test IPv6 addresses to connect from: already on `lo` (`.ci/run` adds them), or added for the check. */
  'ipv6-addresses': async () => {
    const remove = await addLoopbackAddresses([testAddresses.otherNetwork]);
    await remove();
  },
};

export type Part = keyof typeof parts;

const described: Record<Part, string> = {
  chromium: `Chromium at ${chromiumPath}`,
  redis: 'Redis at 127.0.0.1:6379',
  'redis-server': 'the redis-server and redis-cli binaries on PATH',
  openssl: 'the openssl binary on PATH',
  'walk-through tools': 'bash, curl and openssl on PATH',
  'ipv6-addresses':
    'IPv6 test addresses on lo (fd7b:6b72:6f6b::/48): added by .ci/run, or addable here with `ip -6 addr add` as root',
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

/** Whether the machine has a part, without a word: for cleanup that only applies when the part was there. */
export async function present(part: Part): Promise<boolean> {
  return (await check(part)) === undefined;
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
