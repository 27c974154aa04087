import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  emptyToUndefined,
  int,
  jwkSet,
  list,
  optionalString,
  optionalUrl,
  type RateLimitRule,
  rateLimit,
  trustProxy,
} from './configFields.js';
import { normalizeOrigin, parseOriginPattern } from './origins.js';
import { parseEncryptionKey } from './store/encryption.js';
import { hostPortList, type RedisTarget, resolveRedisTarget } from './store/redisTarget.js';
import { type ClientKey, parseClientKey } from './upstream/clientAssertion.js';
import { parseTokenQuota, type TokenQuota } from './upstream/quota.js';

/** Settings whose value is a secret: they may come from `NAME_FILE`, and are never echoed in errors. */
export const secretSettings = [
  'SIGNING_KEYS',
  'BROKER_API_KEYS',
  'UPSTREAM_CLIENT_SECRET',
  'UPSTREAM_CLIENT_KEY',
  'CACHE_ENCRYPTION_KEY',
  'REDIS_PASSWORD',
  'REDIS_SENTINEL_PASSWORD',
] as const;

export type { RateLimitRule } from './configFields.js';

export const envSchema = z.object({
  NODE_ENV: z.preprocess(
    emptyToUndefined,
    z.enum(['development', 'production', 'test']).default('development'),
  ),
  PORT: int(0, 65535, 8080),
  HOST: z.preprocess(emptyToUndefined, z.string().default('0.0.0.0')),
  TRUST_PROXY: trustProxy,
  LOG_LEVEL: z.preprocess(
    emptyToUndefined,
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ),
  ALLOWED_ORIGINS: list.pipe(
    z.array(
      z.string().refine((entry) => parseOriginPattern(entry) !== undefined, {
        error: (issue) =>
          `"${String(issue.input)}" is not an origin (scheme://host[:port]) or a https://*.example.com pattern`,
      }),
    ),
  ),
  CLIENT_TOKEN_TTL: int(1, 86_400, 900),
  CLIENT_TOKEN_BIND_IP: z.preprocess(emptyToUndefined, z.enum(['exact', 'prefix', 'off']).default('exact')),
  CLIENT_TOKEN_BINDING: z.preprocess(emptyToUndefined, z.enum(['none', 'dpop']).default('none')),
  CLIENT_TOKEN_IPV4_PREFIX: int(8, 32, 24),
  CLIENT_TOKEN_IPV6_PREFIX: int(16, 128, 64),
  CLIENT_TOKEN_ISSUER: z.preprocess(emptyToUndefined, z.string().default('urn:token-broker')),
  CLIENT_TOKEN_AUDIENCE: z.preprocess(emptyToUndefined, z.string().default('urn:token-broker:proxy')),
  CLIENT_TOKEN_CLOCK_TOLERANCE: int(0, 300, 5),
  SIGNING_KEYS: jwkSet,
  BROKER_API_KEYS: list.pipe(
    z.array(z.string().min(16, 'each key must be at least 16 characters (or a sha256:<hex> hash)')),
  ),
  UPSTREAM_ISSUER: optionalUrl,
  UPSTREAM_TOKEN_URL: optionalUrl,
  UPSTREAM_CLIENT_ID: optionalString,
  UPSTREAM_CLIENT_SECRET: optionalString,
  UPSTREAM_PROFILE: z.preprocess(emptyToUndefined, z.enum(['rfc6749', 'json', 'bloq']).default('rfc6749')),
  UPSTREAM_AUTH_METHOD: z.preprocess(
    emptyToUndefined,
    z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt']).default('client_secret_basic'),
  ),
  UPSTREAM_CLIENT_KEY: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value, ctx) => {
        const key = parseClientKey(value);
        if (typeof key === 'string') {
          ctx.addIssue({ code: 'custom', message: key });
          return z.NEVER;
        }
        return key;
      })
      .optional(),
  ),
  UPSTREAM_CLIENT_ASSERTION_AUDIENCE: z.preprocess(
    emptyToUndefined,
    z.enum(['token_endpoint', 'issuer']).default('token_endpoint'),
  ),
  UPSTREAM_TOKEN_QUOTA: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value, ctx) => {
        const quota = parseTokenQuota(value);
        if (typeof quota === 'string') {
          ctx.addIssue({ code: 'custom', message: quota });
          return z.NEVER;
        }
        return quota;
      })
      .optional(),
  ),
  UPSTREAM_AUDIENCE: optionalString,
  UPSTREAM_SCOPE: optionalString,
  UPSTREAM_RESOURCE: optionalUrl,
  UPSTREAM_API_URL: optionalUrl,
  UPSTREAM_DEFAULT_TTL: int(1, 86_400, 300),
  UPSTREAM_TIMEOUT_MS: int(100, 120_000, 5_000),
  UPSTREAM_API_TIMEOUT_MS: int(1_000, 3_600_000, 300_000),
  PROXY_MAX_REPLAY_BYTES: int(0, 10_485_760, 65_536),
  REDIS_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^rediss?$/ }).optional()),
  REDIS_SENTINELS: hostPortList,
  REDIS_SENTINEL_NAME: optionalString,
  REDIS_SENTINEL_PASSWORD: optionalString,
  REDIS_CLUSTER_NODES: hostPortList,
  REDIS_USERNAME: optionalString,
  REDIS_PASSWORD: optionalString,
  REDIS_TLS: z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')),
  REDIS_TLS_CA_FILE: optionalString,
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000, 1_000),
  REDIS_KEY_PREFIX: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'must be 1-64 letters, digits or : _ . -')
      .default('token-broker:'),
  ),
  REDIS_LOCK_TTL_MS: int(200, 120_000, 10_000),
  CACHE_ENCRYPTION_KEY: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value, ctx) => {
        const key = parseEncryptionKey(value);
        if (!key) {
          ctx.addIssue({ code: 'custom', message: 'must be 32 random bytes as 64 hex digits or base64' });
          return z.NEVER;
        }
        return key;
      })
      .optional(),
  ),
  RATE_LIMIT_CLIENT_TOKEN: rateLimit('60/minute'),
  RATE_LIMIT_CLAIM: rateLimit('600/minute'),
  RATE_LIMIT_API_KEY_FAILURES: rateLimit('10/minute'),
  MAX_BODY_BYTES: int(256, 10_485_760, 16_384),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000, 10_000),
  METRICS_PORT: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(65_535).optional()),
  METRICS_REQUIRE_API_KEY: z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')),
});

export type Env = z.infer<typeof envSchema>;

export interface UpstreamConfig {
  issuer: string | undefined;
  tokenUrl: string | undefined;
  clientId: string;
  clientSecret: string;
  profile: Env['UPSTREAM_PROFILE'];
  authMethod: Env['UPSTREAM_AUTH_METHOD'];
  audience: string | undefined;
  scope: string | undefined;
  resource: string | undefined;
  apiUrl: string | undefined;
  defaultTtlSeconds: number;
  timeoutMs: number;
  /** Whole-exchange limit of a proxied API call, streaming included. */
  apiTimeoutMs: number;
  /** Request bodies up to this size are buffered so a 401 from the API can be retried with them. */
  maxReplayBytes: number;
  /** The imported private key of `private_key_jwt`; set when `authMethod` is `private_key_jwt`. */
  clientKey?: ClientKey | undefined;
  /** `aud` of the client assertions: the token endpoint (the default) or the issuer. */
  clientAssertionAudience?: Env['UPSTREAM_CLIENT_ASSERTION_AUDIENCE'];
  /** Budget of requests to the token endpoint (`UPSTREAM_TOKEN_QUOTA`); undefined: no governor. */
  tokenQuota?: TokenQuota | undefined;
}

export interface Config {
  nodeEnv: Env['NODE_ENV'];
  production: boolean;
  port: number;
  host: string;
  trustProxy: false | number | string[];
  logLevel: Env['LOG_LEVEL'];
  /** Normalised exact origins and `https://*.example.com` patterns. */
  allowedOrigins: string[];
  clientToken: {
    ttlSeconds: number;
    bindIp: Env['CLIENT_TOKEN_BIND_IP'];
    ipv4Prefix: number;
    ipv6Prefix: number;
    issuer: string;
    audience: string;
    clockToleranceSeconds: number;
  };
  /**
   * `dpop`: `/api/client-token` requires a DPoP proof and binds every token it mints to the proof's key
   * (RFC 9449); `none`: a proof is optional (a token requested with one is bound all the same).
   */
  clientTokenBinding: Env['CLIENT_TOKEN_BINDING'];
  /** A private JWK Set; undefined means "make an ephemeral key" (refused in production). */
  signingKeys: { keys: Record<string, unknown>[] } | undefined;
  apiKeys: string[];
  /** Undefined outside production means "start the dev upstream"; in production it is a start-up error. */
  upstream: UpstreamConfig | undefined;
  /** Where the shared Redis is (single, Sentinel or Cluster); undefined: no Redis, state per process. */
  redisTarget: RedisTarget | undefined;
  /** Settings of the shared Redis; used only when `redisTarget` is set. */
  redis: {
    keyPrefix: string;
    lockTtlMs: number;
    /** A command unanswered this long fails, so a stalled Redis cannot hold a request. */
    commandTimeoutMs: number;
    /** 32 bytes for AES-256-GCM; always set when `redisTarget` is. */
    encryptionKey: Buffer | undefined;
  };
  /** Per-IP limits; undefined turns a limit off. */
  rateLimits: {
    clientToken: RateLimitRule | undefined;
    claim: RateLimitRule | undefined;
    apiKeyFailures: RateLimitRule | undefined;
  };
  maxBodyBytes: number;
  shutdownTimeoutMs: number;
  metrics: {
    /** Serve `/metrics` on this port only (and not on the main one); undefined: on the main port. */
    port: number | undefined;
    /** Ask scrapers for a broker API key (`Authorization: Bearer`). */
    requireApiKey: boolean;
  };
}

/** Every problem found in the environment, one line each; `message` lists them all. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** How the broker authenticates to the token endpoint: a client secret, or a private key (RFC 7523). */
function clientAuthProblems(e: Env): string[] {
  const problems: string[] = [];
  if (e.UPSTREAM_AUTH_METHOD !== 'private_key_jwt') {
    if (!e.UPSTREAM_CLIENT_SECRET) {
      problems.push(
        'UPSTREAM_CLIENT_SECRET: required when an upstream is configured (or UPSTREAM_CLIENT_SECRET_FILE)',
      );
    }
    if (e.UPSTREAM_CLIENT_KEY) {
      problems.push(
        'UPSTREAM_CLIENT_KEY: only used with UPSTREAM_AUTH_METHOD=private_key_jwt; set it or drop the key',
      );
    }
    return problems;
  }
  if (!e.UPSTREAM_CLIENT_KEY) {
    problems.push(
      'UPSTREAM_CLIENT_KEY: required with UPSTREAM_AUTH_METHOD=private_key_jwt (a private JWK, or UPSTREAM_CLIENT_KEY_FILE)',
    );
  }
  if (e.UPSTREAM_PROFILE === 'bloq') {
    problems.push(
      'UPSTREAM_AUTH_METHOD: private_key_jwt is not possible with UPSTREAM_PROFILE=bloq (its body has no client assertion); use rfc6749 or json',
    );
  }
  if (e.UPSTREAM_CLIENT_ASSERTION_AUDIENCE === 'issuer' && !e.UPSTREAM_ISSUER) {
    problems.push('UPSTREAM_CLIENT_ASSERTION_AUDIENCE: "issuer" needs UPSTREAM_ISSUER');
  }
  return problems;
}

export interface LoadConfigOptions {
  readFile?: (path: string) => string;
}

/**
 * Parses the environment into a Config, or throws a ConfigError naming every bad variable at once.
 * Pure apart from reading `*_FILE` secrets through the injected `readFile`.
 */
export function loadConfig(
  env: Record<string, string | undefined>,
  { readFile = (path) => readFileSync(path, 'utf8') }: LoadConfigOptions = {},
): Config {
  const problems: string[] = [];
  const resolved: Record<string, string | undefined> = { ...env };
  for (const name of secretSettings) {
    const file = env[`${name}_FILE`];
    if (!file) continue;
    if (env[name]) {
      problems.push(`${name}_FILE: set together with ${name}; use one of them`);
      continue;
    }
    try {
      resolved[name] = readFile(file).trim();
    } catch (error) {
      problems.push(
        `${name}_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }

  const parsed = envSchema.safeParse(resolved);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      // zod's default messages may quote the input; for secrets, name the rule only.
      const secret = (secretSettings as readonly string[]).includes(name);
      const message = secret && issue.code === 'invalid_type' ? 'has the wrong type' : issue.message;
      problems.push(`${name}: ${message}`);
    }
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';

  const upstreamVars = [
    'UPSTREAM_ISSUER',
    'UPSTREAM_TOKEN_URL',
    'UPSTREAM_CLIENT_ID',
    'UPSTREAM_CLIENT_SECRET',
    'UPSTREAM_CLIENT_KEY',
    'UPSTREAM_API_URL',
  ] as const;
  const anyUpstream = upstreamVars.some((name) => e[name] !== undefined);
  let upstream: UpstreamConfig | undefined;
  if (anyUpstream || production) {
    if (!e.UPSTREAM_TOKEN_URL && !e.UPSTREAM_ISSUER) {
      problems.push(
        production && !anyUpstream
          ? 'UPSTREAM_TOKEN_URL: no upstream is configured; production never starts the dev upstream (set UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER)'
          : 'UPSTREAM_TOKEN_URL: set UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER',
      );
    }
    if (!e.UPSTREAM_CLIENT_ID) problems.push('UPSTREAM_CLIENT_ID: required when an upstream is configured');
    problems.push(...clientAuthProblems(e));
    upstream = {
      issuer: e.UPSTREAM_ISSUER,
      tokenUrl: e.UPSTREAM_TOKEN_URL,
      clientId: e.UPSTREAM_CLIENT_ID ?? '',
      clientSecret: e.UPSTREAM_CLIENT_SECRET ?? '',
      profile: e.UPSTREAM_PROFILE,
      authMethod: e.UPSTREAM_AUTH_METHOD,
      audience: e.UPSTREAM_AUDIENCE,
      scope: e.UPSTREAM_SCOPE,
      resource: e.UPSTREAM_RESOURCE,
      apiUrl: e.UPSTREAM_API_URL,
      defaultTtlSeconds: e.UPSTREAM_DEFAULT_TTL,
      timeoutMs: e.UPSTREAM_TIMEOUT_MS,
      apiTimeoutMs: e.UPSTREAM_API_TIMEOUT_MS,
      maxReplayBytes: e.PROXY_MAX_REPLAY_BYTES,
      clientKey: e.UPSTREAM_CLIENT_KEY,
      clientAssertionAudience: e.UPSTREAM_CLIENT_ASSERTION_AUDIENCE,
      tokenQuota: e.UPSTREAM_TOKEN_QUOTA,
    };
  }
  const { target: redisTarget, problems: redisProblems } = resolveRedisTarget(e, readFile);
  problems.push(...redisProblems);
  // Required outside production too: replicas must share the key, and a silent "no encryption" mode in
  // development is the one that ends up in production.
  const redisWanted = e.REDIS_URL || e.REDIS_SENTINELS.length > 0 || e.REDIS_CLUSTER_NODES.length > 0;
  if (redisWanted && !e.CACHE_ENCRYPTION_KEY) {
    problems.push(
      'CACHE_ENCRYPTION_KEY: required when Redis is configured (32 random bytes, e.g. `openssl rand -base64 32`; or CACHE_ENCRYPTION_KEY_FILE)',
    );
  }
  if (production && !e.SIGNING_KEYS) {
    problems.push('SIGNING_KEYS: required in production (a private JWK Set, or SIGNING_KEYS_FILE)');
  }
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT === e.PORT) {
    problems.push('METRICS_PORT: must differ from PORT (leave it empty to serve /metrics on PORT)');
  }
  // Without the dev upstream no key is generated later, so every scrape would be refused.
  if (e.METRICS_REQUIRE_API_KEY === 'true' && upstream && e.BROKER_API_KEYS.length === 0) {
    problems.push('METRICS_REQUIRE_API_KEY: needs BROKER_API_KEYS (or BROKER_API_KEYS_FILE)');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    nodeEnv: e.NODE_ENV,
    production,
    port: e.PORT,
    host: e.HOST,
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    allowedOrigins: e.ALLOWED_ORIGINS.map((entry) => normalizeOrigin(entry) ?? entry.toLowerCase()),
    clientToken: {
      ttlSeconds: e.CLIENT_TOKEN_TTL,
      bindIp: e.CLIENT_TOKEN_BIND_IP,
      ipv4Prefix: e.CLIENT_TOKEN_IPV4_PREFIX,
      ipv6Prefix: e.CLIENT_TOKEN_IPV6_PREFIX,
      issuer: e.CLIENT_TOKEN_ISSUER,
      audience: e.CLIENT_TOKEN_AUDIENCE,
      clockToleranceSeconds: e.CLIENT_TOKEN_CLOCK_TOLERANCE,
    },
    clientTokenBinding: e.CLIENT_TOKEN_BINDING,
    signingKeys: e.SIGNING_KEYS as Config['signingKeys'],
    apiKeys: e.BROKER_API_KEYS,
    upstream,
    redisTarget,
    redis: {
      keyPrefix: e.REDIS_KEY_PREFIX,
      lockTtlMs: e.REDIS_LOCK_TTL_MS,
      commandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
      encryptionKey: e.CACHE_ENCRYPTION_KEY,
    },
    rateLimits: {
      clientToken: e.RATE_LIMIT_CLIENT_TOKEN,
      claim: e.RATE_LIMIT_CLAIM,
      apiKeyFailures: e.RATE_LIMIT_API_KEY_FAILURES,
    },
    maxBodyBytes: e.MAX_BODY_BYTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    metrics: { port: e.METRICS_PORT, requireApiKey: e.METRICS_REQUIRE_API_KEY === 'true' },
  };
}
