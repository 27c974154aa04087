import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { describeRedisTarget, parseEndpoint } from '../../src/store/redisTarget.js';
import { configProblems } from '../support/expectErrors.js';

const cacheKey = { CACHE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') };

const problemsOf = (env: Record<string, string>, files: Record<string, string> = {}) =>
  configProblems(env, { readFile: (path) => files[path] ?? fail(path) });

function fail(path: string): never {
  throw Object.assign(new Error(`no ${path}`), { code: 'ENOENT' });
}

describe('Redis target settings', () => {
  it('when REDIS_URL is set, then the target is one server and the URL is kept as given', () => {
    const config = loadConfig({ REDIS_URL: 'redis://127.0.0.1:6380/2', ...cacheKey });
    expect(config.redisTarget).toEqual({
      mode: 'single',
      url: 'redis://127.0.0.1:6380/2',
      username: undefined,
      password: undefined,
      tls: undefined,
    });
    expect(config.redis.commandTimeoutMs).toBe(1_000);
    expect(describeRedisTarget(config.redisTarget)).toBe('one server at 127.0.0.1:6380');
  });

  it('when sentinels, a master name and passwords from files are set, then the target is Sentinel with TLS and the CA', () => {
    const config = loadConfig(
      {
        REDIS_SENTINELS: 'sentinel-a:26379, [::1]:26380',
        REDIS_SENTINEL_NAME: 'mymaster',
        REDIS_PASSWORD_FILE: '/run/secrets/redis',
        REDIS_SENTINEL_PASSWORD: 'sentinel-pass',
        REDIS_TLS: 'true',
        REDIS_TLS_CA_FILE: '/etc/ca.pem',
        REDIS_COMMAND_TIMEOUT_MS: '250',
        ...cacheKey,
      },
      {
        readFile: (path) =>
          ({ '/run/secrets/redis': 'data-pass\n', '/etc/ca.pem': 'PEM' })[path] ?? fail(path),
      },
    );
    expect(config.redisTarget).toEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 'sentinel-a', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'mymaster',
      sentinelPassword: 'sentinel-pass',
      username: undefined,
      password: 'data-pass',
      tls: { ca: 'PEM' },
    });
    expect(config.redis.commandTimeoutMs).toBe(250);
    const described = describeRedisTarget(config.redisTarget);
    expect(described).toBe('sentinel master "mymaster" via sentinel-a:26379, ::1:26380, tls');
    expect(described).not.toContain('pass');
  });

  it('when cluster nodes are set, then the target is a Cluster', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000', ...cacheKey });
    expect(config.redisTarget).toMatchObject({
      mode: 'cluster',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7000 },
      ],
    });
  });

  it('when two modes are set at once, then start-up names both and says to keep one', () => {
    const problems = problemsOf({
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_CLUSTER_NODES: '127.0.0.1:7000',
      ...cacheKey,
    });
    expect(problems).toEqual([
      'REDIS_CLUSTER_NODES: set only one of REDIS_URL (one server), REDIS_SENTINELS (Sentinel) or REDIS_CLUSTER_NODES (Cluster); REDIS_URL and REDIS_CLUSTER_NODES are set',
    ]);
  });

  it('when Sentinel settings are incomplete or stray, then each problem is one line naming the variable', () => {
    expect(problemsOf({ REDIS_SENTINELS: '127.0.0.1:26379', ...cacheKey })).toEqual([
      'REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the master name the sentinels monitor), e.g. REDIS_SENTINEL_NAME=mymaster',
    ]);
    expect(problemsOf({ REDIS_SENTINEL_NAME: 'mymaster', REDIS_PASSWORD: 'x' })).toEqual([
      'REDIS_SENTINEL_NAME: only used with REDIS_SENTINELS',
      'REDIS_PASSWORD: only used with REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES',
    ]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'node-without-port', ...cacheKey })).toEqual([
      'REDIS_CLUSTER_NODES: "node-without-port" is not host:port, e.g. REDIS_CLUSTER_NODES=10.0.0.5:6379,10.0.0.6:6379,10.0.0.7:6379',
    ]);
  });

  it('when TLS or passwords clash with REDIS_URL, then start-up says which form to use, without echoing the password', () => {
    const problems = problemsOf({
      REDIS_URL: 'redis://:url-secret@127.0.0.1:6379',
      REDIS_PASSWORD: 'setting-secret',
      REDIS_TLS: 'true',
      ...cacheKey,
    });
    expect(problems).toEqual([
      'REDIS_TLS: with REDIS_URL, ask for TLS with a rediss:// URL, e.g. REDIS_TLS=true',
      'REDIS_PASSWORD: REDIS_URL carries a password already; keep one of them',
    ]);
    expect(problems.join('\n')).not.toMatch(/secret/);
    expect(
      problemsOf({ REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_TLS_CA_FILE: '/ca.pem', ...cacheKey }),
    ).toEqual(['REDIS_TLS_CA_FILE: needs REDIS_TLS=true (or a rediss:// REDIS_URL)']);
    expect(
      problemsOf({ REDIS_URL: 'rediss://127.0.0.1:6379', REDIS_TLS_CA_FILE: '/missing.pem', ...cacheKey }),
    ).toEqual([
      'REDIS_TLS_CA_FILE: cannot read /missing.pem (ENOENT), e.g. REDIS_TLS_CA_FILE=/etc/ssl/redis-ca.pem',
    ]);
  });

  it('when Sentinel or Cluster is set without CACHE_ENCRYPTION_KEY, then start-up asks for it', () => {
    expect(problemsOf({ REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toEqual([
      'CACHE_ENCRYPTION_KEY: required when Redis is configured (32 random bytes, e.g. `openssl rand -base64 32`; or CACHE_ENCRYPTION_KEY_FILE)',
    ]);
  });

  it('when an endpoint is parsed, then hosts, IPv6 in brackets and port bounds are checked', () => {
    expect(parseEndpoint('redis-0.redis:6379')).toEqual({ host: 'redis-0.redis', port: 6379 });
    expect(parseEndpoint('[2001:db8::1]:7000')).toEqual({ host: '2001:db8::1', port: 7000 });
    expect(parseEndpoint('host:0')).toBeUndefined();
    expect(parseEndpoint('host:65536')).toBeUndefined();
    expect(parseEndpoint('2001:db8::1:7000')).toBeUndefined();
    expect(parseEndpoint(':7000')).toBeUndefined();
  });
});
