import { readFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { runCli } from './run.js';

// The entry point alone touches the process; package.json sits two levels up from src/cli/ and dist/cli/ alike.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const stop = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());

process.exitCode = await runCli(
  process.argv.slice(2),
  {
    env: process.env,
    cwd: process.cwd(),
    stdout: (chunk) => process.stdout.write(chunk),
    stderr: (chunk) => process.stderr.write(chunk),
    readStdin: () => text(process.stdin),
    secrets: new Set(),
    signal: stop.signal,
  },
  version,
);
