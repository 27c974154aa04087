import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { normalizeOrigin, parseOriginPattern } from './origins.js';

/** Settings whose value is a secret: they may come from `NAME_FILE`, and are never echoed in errors. */
export const secretSettings = ['SIGNING_KEYS', 'BROKER_API_KEYS', 'UPSTREAM_CLIENT_SECRET'] as const;

const emptyToUndefined = (value: unknown) =>
  typeof value === 'string' && value.trim() === '' ? undefined : value;
const optionalString = z.preprocess(emptyToUndefined, z.string().trim().optional());
const optionalUrl = z.preprocess(emptyToUndefined, z.url({ protocol: /^https?$/ }).optional());
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(emptyToUndefined, z.coerce.number().int().min(min).max(max).default(fallback));
const list = z.preprocess(
  (value) =>
    typeof value === 'string'
      ? value
          .split(',')
          .map((item) => item.trim())
          .filter(Boolean)
      : [],
  z.array(z.string()),
);

/**
 * `false` (default: the socket address is the client), a hop count, or a list of trusted proxy
 * addresses/CIDRs/`loopback`/`linklocal`/`uniquelocal` as Express's `trust proxy` understands them.
 * `true` is refused: it trusts the left-most `X-Forwarded-For` entry, which the client writes itself.
 */
const trustProxy = z.preprocess(
  emptyToUndefined,
  z
    .string()
    .default('false')
    .transform((value, ctx): false | number | string[] => {
      const trimmed = value.trim().toLowerCase();
      if (trimmed === 'false' || trimmed === '0') return false;
      if (trimmed === 'true') {
        ctx.addIssue({
          code: 'custom',
          message:
            'must be a hop count or a list of proxy addresses; "true" would trust client-written X-Forwarded-For',
        });
        return z.NEVER;
      }
      if (/^\d+$/.test(trimmed)) return Number(trimmed);
      const entries = trimmed.split(',').map((entry) => entry.trim());
      for (const entry of entries) {
        const [address, bits] = entry.split('/');
        const named = ['loopback', 'linklocal', 'uniquelocal'].includes(entry);
        const bitsOk = bits === undefined || /^\d{1,3}$/.test(bits);
        if (!named && !(address && isIP(address) && bitsOk)) {
          ctx.addIssue({
            code: 'custom',
            message: `"${entry}" is not an IP address, CIDR or loopback/linklocal/uniquelocal`,
          });
          return z.NEVER;
        }
      }
      return entries;
    }),
);

const jwkSet = z.preprocess(
  emptyToUndefined,
  z
    .string()
    .transform((value, ctx) => {
      try {
        return JSON.parse(value) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON Web Key Set ({"keys":[...]})' });
        return z.NEVER;
      }
    })
    .pipe(
      z.object(
        { keys: z.array(z.record(z.string(), z.unknown())).min(1, 'must hold at least one key') },
        { error: 'must be a JSON Web Key Set ({"keys":[...]})' },
      ),
    )
    .optional(),
);

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
    z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
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
  MAX_BODY_BYTES: int(256, 10_485_760, 16_384),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000, 10_000),
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
  /** A private JWK Set; undefined means "make an ephemeral key" (refused in production). */
  signingKeys: { keys: Record<string, unknown>[] } | undefined;
  apiKeys: string[];
  /** Undefined outside production means "start the dev upstream"; in production it is a start-up error. */
  upstream: UpstreamConfig | undefined;
  redisUrl: string | undefined;
  maxBodyBytes: number;
  shutdownTimeoutMs: number;
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
    if (!e.UPSTREAM_CLIENT_SECRET) {
      problems.push(
        'UPSTREAM_CLIENT_SECRET: required when an upstream is configured (or UPSTREAM_CLIENT_SECRET_FILE)',
      );
    }
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
    };
  }
  if (production && !e.SIGNING_KEYS) {
    problems.push('SIGNING_KEYS: required in production (a private JWK Set, or SIGNING_KEYS_FILE)');
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
    signingKeys: e.SIGNING_KEYS as Config['signingKeys'],
    apiKeys: e.BROKER_API_KEYS,
    upstream,
    redisUrl: e.REDIS_URL,
    maxBodyBytes: e.MAX_BODY_BYTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  };
}
