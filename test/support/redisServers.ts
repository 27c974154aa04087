import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RedisTarget } from '../../src/store/redisTarget.js';
import { freePort } from './freePort.js';

/**
 * Private `redis-server` processes for the tests that kill, pause or restart Redis: each on free
 * loopback ports, in its own temp dir, without persistence (`--save '' --appendonly no`, as the
 * Kubernetes example runs it), so a restart comes back empty. The shared Redis at 6379 is never touched.
 */

const run = promisify(execFile);

/** A single-server target, as `REDIS_URL` would give. */
export const singleRedis = (url: string): RedisTarget => ({
  mode: 'single',
  url,
  username: undefined,
  password: undefined,
  tls: undefined,
});

export interface RedisServer {
  port: number;
  url: string;
  /** Process id of the current incarnation. */
  pid(): number | undefined;
  /** SIGKILL: no shutdown, no save. */
  kill(): Promise<void>;
  /** SIGSTOP: the port accepts connections but nothing answers, like a stalled host. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /**
   * Starts it again on the same port: empty, since nothing is persisted. `onceArgs` apply to this start
   * only (a password that has rotated since the server was made).
   */
  start(onceArgs?: string[]): Promise<void>;
  stop(): Promise<void>;
}

const alive = new Set<ChildProcess>();
// A test that crashes must not leave servers behind for the next run.
process.once('exit', () => {
  for (const child of alive) child.kill('SIGKILL');
});

function spawnRedis(args: string[]): ChildProcess {
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  alive.add(child);
  child.once('exit', () => alive.delete(child));
  return child;
}

/** Resolves once `PING` on the port gets `+PONG` (or `-NOAUTH`), or rejects after `timeoutMs`. */
export async function waitForPing(port: number, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answered = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let reply = '';
      socket.setTimeout(300, () => {
        socket.destroy();
        resolve(false);
      });
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (chunk) => {
        reply += chunk.toString();
        if (!reply.includes('\r\n')) return;
        socket.destroy();
        // A server with a password answers NOAUTH: it is up all the same.
        resolve(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
      });
      socket.on('error', () => resolve(false));
    });
    if (answered) return;
    if (Date.now() > deadline)
      throw new Error(`redis on port ${port} did not answer PING in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
}

/** One `redis-server` on a free port (`extraArgs` e.g. `--replicaof`, `--cluster-enabled yes`). */
export async function startRedisServer(extraArgs: string[] = []): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tb-redis-'));
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => child?.pid,
    async kill() {
      if (!child) return;
      const current = child;
      child = undefined;
      current.kill('SIGCONT');
      current.kill('SIGKILL');
      await exited(current);
    },
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    async start(onceArgs = []) {
      child = spawnRedis([
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        ...extraArgs,
        ...onceArgs,
      ]);
      await waitForPing(port);
    },
    async stop() {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

export interface SentinelGroup {
  master: RedisServer;
  replica: RedisServer;
  sentinelPorts: number[];
  /** The monitored master's name (`REDIS_SENTINEL_NAME`). */
  name: string;
  /** `REDIS_SENTINELS`. */
  sentinels: string;
  /** The port of the master the sentinels currently name. */
  currentMasterPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A master, one replica and three sentinels (quorum 2) watching them. `downAfterMs` is how long the
 * master must be silent before the sentinels agree it is down and promote the replica.
 */
export async function startSentinelGroup({ downAfterMs = 500 } = {}): Promise<SentinelGroup> {
  const name = 'tbmaster';
  const master = await startRedisServer();
  const replica = await startRedisServer(['--replicaof', '127.0.0.1', String(master.port)]);
  const dir = mkdtempSync(join(tmpdir(), 'tb-sentinel-'));
  const sentinelPorts = await Promise.all([freePort(), freePort(), freePort()]);
  const sentinelProcesses = sentinelPorts.map((port) => {
    const file = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      file,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    return spawnRedis([file, '--sentinel']);
  });
  await Promise.all(sentinelPorts.map((port) => waitForPing(port)));
  const ask = async (port: number) =>
    (await run('redis-cli', ['-p', String(port), 'SENTINEL', 'get-master-addr-by-name', name])).stdout;
  const currentMasterPort = async () => Number((await ask(sentinelPorts[0] as number)).trim().split('\n')[1]);
  // The sentinels must know the replica and each other before a failover can be agreed.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { stdout } = await run('redis-cli', ['-p', String(sentinelPorts[0]), 'SENTINEL', 'master', name]);
    const fields = stdout.trim().split('\n');
    const field = (key: string) => Number(fields[fields.indexOf(key) + 1]);
    if (field('num-slaves') >= 1 && field('num-other-sentinels') >= 2) break;
    if (Date.now() > deadline) throw new Error('sentinels did not discover the replica and each other');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    master,
    replica,
    sentinelPorts,
    name,
    sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
    currentMasterPort,
    async stop() {
      for (const child of sentinelProcesses) child.kill('SIGKILL');
      await Promise.all(sentinelProcesses.map(exited));
      await Promise.all([master.stop(), replica.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisCluster {
  nodes: RedisServer[];
  /** `REDIS_CLUSTER_NODES`. */
  seeds: string;
  stop(): Promise<void>;
}

/** Three masters, no replicas, every slot assigned (`redis-cli --cluster create`). */
export async function startRedisCluster(): Promise<RedisCluster> {
  const nodes = await Promise.all(
    [0, 1, 2].map(() =>
      startRedisServer([
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        '2000',
      ]),
    ),
  );
  const seeds = nodes.map(({ port }) => `127.0.0.1:${port}`);
  await run('redis-cli', ['--cluster', 'create', ...seeds, '--cluster-replicas', '0', '--cluster-yes']);
  const deadline = Date.now() + 10_000;
  for (const node of nodes) {
    for (;;) {
      const { stdout } = await run('redis-cli', ['-p', String(node.port), 'CLUSTER', 'INFO']);
      if (stdout.includes('cluster_state:ok')) break;
      if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    nodes,
    seeds: seeds.join(','),
    async stop() {
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
}
