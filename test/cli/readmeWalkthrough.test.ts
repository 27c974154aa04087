import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'dotenv';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createBroker } from '../../src/broker.js';
import { runCli } from '../../src/cli/run.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config/index.js';
import { freePort } from '../support/freePort.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { missing } from '../support/requires.js';
import { waitFor } from '../support/waiting.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The shell blocks of the README's walk-through, in order: what a reader pastes. */
function walkThrough(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = /^## Walk-through\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((block) => block[1]).join('\n');
}

/**
 * Stand-ins for the two long-running commands, so that the servers run in this process (fast, and seen
 * by the leak check) while everything else (curl, openssl, node, the shell's job control) runs as
 * written: `npx token-broker dev-upstream` prints what the in-process dev-upstream printed and waits;
 * `npm start` hands its environment over and waits for the in-process broker to be stopped with it.
 * Building is skipped: the code under test is this checkout's source.
 */
const standIns = `
npm() {
  case "$*" in
    install | "run build") ;;
    start) env > "$TB_BROKER_ENV.tmp" && mv "$TB_BROKER_ENV.tmp" "$TB_BROKER_ENV"; exec sleep 600 ;;
    *) echo "walk-through: unexpected npm $*" >&2; return 1 ;;
  esac
}
npx() {
  [ "$*" = "token-broker dev-upstream" ] || { echo "walk-through: unexpected npx $*" >&2; return 1; }
  cat "$TB_DEV_UPSTREAM_OUT"; exec sleep 600
}
set -eo pipefail
`;

describe.skipIf(await missing('walk-through tools'))("the README's walk-through", () => {
  it('when pasted into a shell against token-broker dev-upstream, then every step answers as the README says', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'token-broker-walkthrough-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const script = walkThrough();
    // The one line the README asks to change when 8080 is taken.
    expect(script).toMatch(/^export PORT=8080 /m);
    const pasted = script.replace(/^export PORT=8080 /m, `export PORT=${port} `);

    // `token-broker dev-upstream`, in process.
    const stopDevUpstream = new AbortController();
    let printed = '';
    const devUpstream = runCli(
      ['dev-upstream'],
      {
        env: {},
        cwd: dir,
        stdout: (text) => {
          printed += text;
        },
        stderr: () => {},
        readStdin: async () => '',
        secrets: new Set(),
        signal: stopDevUpstream.signal,
      },
      '0.0.0-test',
    );
    onTestFinished(async () => {
      stopDevUpstream.abort();
      await devUpstream;
    });
    await waitFor(() => printed.includes('UPSTREAM_API_URL='), 30_000);
    registerSecret('walk-through dev-upstream secret', parse(printed).UPSTREAM_CLIENT_SECRET ?? '');
    writeFileSync(join(dir, 'dev-upstream.out'), printed);

    const brokerEnvFile = join(dir, 'broker.env');
    const shell = spawn('bash', ['-c', standIns + pasted], {
      cwd: dir,
      detached: true,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        TB_DEV_UPSTREAM_OUT: join(dir, 'dev-upstream.out'),
        TB_BROKER_ENV: brokerEnvFile,
      },
    });
    let stdout = '';
    let stderr = '';
    shell.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    shell.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((resolve) =>
      shell.on('exit', (code) => {
        exitCode = code;
        resolve(code);
      }),
    );
    // The shell's background jobs (the stand-ins) share its process group.
    onTestFinished(() => {
      if (shell.pid !== undefined && exitCode === undefined) process.kill(-shell.pid, 'SIGKILL');
    });

    // `npm start`, in process, with the environment the walk-through gave it.
    await waitFor(() => existsSync(brokerEnvFile) || exitCode !== undefined, 30_000);
    if (!existsSync(brokerEnvFile)) throw new Error(`the walk-through never ran npm start:\n${stderr}`);
    const env = parse(readFileSync(brokerEnvFile, 'utf8'));
    registerSecret('walk-through broker API key', env.BROKER_API_KEYS ?? '');
    const config = loadConfig(env);
    expect(config.port).toBe(port);
    const broker = await createBroker({ config, logger: captureLogs('warn').logger, clock: systemClock });
    const server = createServer(broker.app);
    onTestFinished(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await broker.close();
    });
    await new Promise<void>((resolve) => server.listen(config.port, config.host, resolve));

    expect(await exited, stderr).toBe(0);
    const [claim, hello, upstreamToken, jwks, ...rest] = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(rest).toEqual([]);
    expect(claim?.token).toEqual(expect.any(String));
    expect(hello).toMatchObject({ message: 'Hello from the demo API', scope: 'api:read' });
    expect(upstreamToken).toMatchObject({ access_token: expect.any(String), token_type: 'Bearer' });
    expect(jwks?.keys).toEqual([expect.objectContaining({ kid: expect.any(String) })]);
  }, 120_000);
});
