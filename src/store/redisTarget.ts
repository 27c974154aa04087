import { z } from 'zod';
import { list } from '../config/fields.js';

export interface RedisEndpoint {
  host: string;
  port: number;
}

/** Credentials and TLS for the data nodes; a `REDIS_URL` may carry its own user and password instead. */
export interface RedisAuth {
  username: string | undefined;
  password: string | undefined;
  /** TLS to the data nodes (and the sentinels); `ca` replaces the system roots when set (PEM). */
  tls: { ca: string | undefined } | undefined;
}

/** Where the fleet's Redis is: one server, a Sentinel-watched master, or a Cluster. */
export type RedisTarget = RedisAuth &
  (
    | { mode: 'single'; url: string }
    | { mode: 'sentinel'; sentinels: RedisEndpoint[]; name: string; sentinelPassword: string | undefined }
    | { mode: 'cluster'; nodes: RedisEndpoint[] }
  );

/** `host:port` or `[v6]:port`, or undefined when it is neither. */
export function parseEndpoint(text: string): RedisEndpoint | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (!host || !(port >= 1 && port <= 65_535)) return undefined;
  return { host, port };
}

/** A comma-separated list of `host:port`; empty or unset is an empty list. */
export const hostPortList = list.pipe(
  z.array(
    z.string().transform((value, ctx) => {
      const endpoint = parseEndpoint(value);
      if (!endpoint) {
        ctx.addIssue({ code: 'custom', message: `"${value}" is not host:port` });
        return z.NEVER;
      }
      return endpoint;
    }),
  ),
);

/** The parsed settings this module reads (a slice of the config schema's output). */
export interface RedisSettings {
  REDIS_URL?: string | undefined;
  REDIS_SENTINELS: RedisEndpoint[];
  REDIS_SENTINEL_NAME?: string | undefined;
  REDIS_SENTINEL_PASSWORD?: string | undefined;
  REDIS_CLUSTER_NODES: RedisEndpoint[];
  REDIS_USERNAME?: string | undefined;
  REDIS_PASSWORD?: string | undefined;
  REDIS_TLS: 'true' | 'false';
  REDIS_TLS_CA_FILE?: string | undefined;
}

/**
 * The Redis target from the settings, or the problems that stop start-up (one line each, naming the
 * variable). Exactly one of `REDIS_URL`, `REDIS_SENTINELS`, `REDIS_CLUSTER_NODES` picks the mode.
 */
export function resolveRedisTarget(
  e: RedisSettings,
  readFile: (path: string) => string,
): { target: RedisTarget | undefined; problems: string[] } {
  const problems: string[] = [];
  const modes = [
    e.REDIS_URL && 'REDIS_URL',
    e.REDIS_SENTINELS.length > 0 && 'REDIS_SENTINELS',
    e.REDIS_CLUSTER_NODES.length > 0 && 'REDIS_CLUSTER_NODES',
  ].filter((name): name is string => typeof name === 'string');
  if (modes.length > 1) {
    problems.push(
      `${modes[1]}: set only one of REDIS_URL (one server), REDIS_SENTINELS (Sentinel) or REDIS_CLUSTER_NODES (Cluster); ${modes.join(' and ')} are set`,
    );
  }
  const sentinel = e.REDIS_SENTINELS.length > 0;
  if (sentinel && !e.REDIS_SENTINEL_NAME) {
    problems.push(
      'REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the master name the sentinels monitor)',
    );
  }
  if (!sentinel && e.REDIS_SENTINEL_NAME)
    problems.push('REDIS_SENTINEL_NAME: only used with REDIS_SENTINELS');
  if (!sentinel && e.REDIS_SENTINEL_PASSWORD) {
    problems.push('REDIS_SENTINEL_PASSWORD: only used with REDIS_SENTINELS');
  }
  const tlsWanted = e.REDIS_TLS === 'true';
  if (modes.length === 0) {
    for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS_CA_FILE'] as const) {
      if (e[name]) problems.push(`${name}: only used with REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES`);
    }
    if (tlsWanted) problems.push('REDIS_TLS: only used with REDIS_SENTINELS or REDIS_CLUSTER_NODES');
  }
  let urlTls = false;
  if (e.REDIS_URL) {
    const url = new URL(e.REDIS_URL);
    urlTls = url.protocol === 'rediss:';
    if (tlsWanted) problems.push('REDIS_TLS: with REDIS_URL, ask for TLS with a rediss:// URL');
    if (url.password && e.REDIS_PASSWORD) {
      problems.push('REDIS_PASSWORD: REDIS_URL carries a password already; keep one of them');
    }
  }
  const tls = tlsWanted || urlTls;
  if (e.REDIS_TLS_CA_FILE && !tls && modes.length > 0) {
    problems.push('REDIS_TLS_CA_FILE: needs REDIS_TLS=true (or a rediss:// REDIS_URL)');
  }
  let ca: string | undefined;
  if (e.REDIS_TLS_CA_FILE && tls) {
    try {
      ca = readFile(e.REDIS_TLS_CA_FILE);
    } catch (error) {
      problems.push(
        `REDIS_TLS_CA_FILE: cannot read ${e.REDIS_TLS_CA_FILE} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  if (problems.length > 0 || modes.length === 0) return { target: undefined, problems };

  const auth: RedisAuth = {
    username: e.REDIS_USERNAME,
    password: e.REDIS_PASSWORD,
    tls: tls ? { ca } : undefined,
  };
  if (e.REDIS_URL) return { target: { ...auth, mode: 'single', url: e.REDIS_URL }, problems };
  if (sentinel) {
    return {
      target: {
        ...auth,
        mode: 'sentinel',
        sentinels: e.REDIS_SENTINELS,
        name: e.REDIS_SENTINEL_NAME ?? '',
        sentinelPassword: e.REDIS_SENTINEL_PASSWORD,
      },
      problems,
    };
  }
  return { target: { ...auth, mode: 'cluster', nodes: e.REDIS_CLUSTER_NODES }, problems };
}

/** For `check-config` and logs: the mode and where, never a credential. */
export function describeRedisTarget(target: RedisTarget | undefined): string {
  if (!target) return 'no (in-memory store, one replica)';
  const tls = target.tls ? ', tls' : '';
  const list = (endpoints: RedisEndpoint[]) =>
    endpoints.map(({ host, port }) => `${host}:${port}`).join(', ');
  switch (target.mode) {
    case 'single': {
      const url = new URL(target.url);
      return `one server at ${url.host}${tls}`;
    }
    case 'sentinel':
      return `sentinel master "${target.name}" via ${list(target.sentinels)}${tls}`;
    case 'cluster':
      return `cluster seeded by ${list(target.nodes)}${tls}`;
  }
}
