/** Child processes of the bench: start, wait until they answer, read their memory, stop. */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';

/**
 * Starts a bench server script that prints one JSON line (`{"port":n,...}`) once listening, and
 * resolves with that line's fields and the child.
 */
export async function startScript(script, env = {}, { nodeArgs = [] } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const info = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before listening`)));
    lines.once('line', (line) => resolve(JSON.parse(line)));
  });
  lines.close();
  child.stdout.resume();
  return { ...info, child, url: `http://127.0.0.1:${info.port}` };
}

/**
 * Starts the built broker (`dist/main.js`) as a production process would run it, with `env` as its
 * whole configuration, from a scratch directory so no developer `.env` leaks in. Its log lines go to
 * /dev/null: they are written (that cost is part of the measure) but not read.
 */
export async function startBroker(mainPath, env, { nodeArgs = [] } = {}) {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeArgs, mainPath], {
    cwd: tmpdir(),
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  for (let attempt = 0; attempt < 200; attempt += 1) {
    if (exited) throw new Error(`the broker exited with ${child.exitCode} at start-up`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) return { child, url, port };
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error('the broker did not answer /healthz within 10 s');
}

/** Stops a child and waits for it to exit (SIGTERM lets the broker drain and write its CPU profile). */
export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Resident set size of a process in bytes, from `/proc/<pid>/status` (Linux). */
export async function rssBytes(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * CPU time (user + system) a process has used, in microseconds, from procfs (Linux): all its threads,
 * and its main thread alone (the event loop, whose time bounds a Node server's throughput).
 */
export async function cpuMicros(pid) {
  const [all, main] = await Promise.all([
    readFile(`/proc/${pid}/stat`, 'utf8'),
    readFile(`/proc/${pid}/task/${pid}/stat`, 'utf8'),
  ]);
  return { all: statCpuMicros(all), main: statCpuMicros(main) };
}

function statCpuMicros(stat) {
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clockTicksPerSecond;
}

/** `getconf CLK_TCK` is 100 on every Linux that Node supports. */
const clockTicksPerSecond = 100;
