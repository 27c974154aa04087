import { z } from 'zod';
import { normalizeOrigin, parseOriginPattern } from '../caller/origins.js';
import { emptyToUndefined, int, list, optionalInt, trustProxy } from './fields.js';

/** Origin patterns; also each named upstream's `UPSTREAM_<NAME>_ALLOWED_ORIGINS`. */
export const allowedOriginsField = list.pipe(
  z.array(
    z.string().refine((entry) => parseOriginPattern(entry) !== undefined, {
      error: (issue) =>
        /\*(?!\.)/.test(String(issue.input))
          ? `"${String(issue.input)}" is not a pattern: a wildcard is \`*.\` followed by a domain, e.g. https://*.example.com`
          : `"${String(issue.input)}" is not an origin (scheme://host[:port]) or a https://*.example.com pattern`,
    }),
  ),
);

export const normalizeAllowedOrigins = (entries: string[]) =>
  entries.map((entry) => normalizeOrigin(entry) ?? entry.toLowerCase());

/** Where the broker listens, who may call it, and how it reports: the settings of the process itself. */
export const serverSchema = z.object({
  NODE_ENV: z
    .preprocess(emptyToUndefined, z.enum(['development', 'production', 'test']).default('development'))
    .meta({
      description:
        '`production` requires `SIGNING_KEYS` and an upstream, and never starts the embedded dev upstream',
      example: 'production',
    }),
  PORT: int(0, 65535, 8080).meta({ description: 'port to listen on', example: '8080' }),
  HOST: z.preprocess(emptyToUndefined, z.string().optional()).meta({
    description:
      'address to bind; by default `0.0.0.0` in production (a container must be reachable) and `127.0.0.1` otherwise, so that a dev broker, its demo page and its printed dev API key stay on this machine',
    example: '0.0.0.0',
  }),
  TRUST_PROXY: trustProxy.meta({
    description:
      'proxies trusted for `X-Forwarded-For`: `false`, a hop count, or addresses/CIDRs/`loopback`/`linklocal`/`uniquelocal`; `true` is refused',
    example: '1',
  }),
  LOG_LEVEL: z
    .preprocess(
      emptyToUndefined,
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    )
    .meta({ description: 'pino log level', example: 'warn' }),
  ALLOWED_ORIGINS: allowedOriginsField.meta({
    description:
      "comma-separated origins that may fetch `/api/client-token`; `https://*.example.com` matches subdomains only. Empty: none (in development: the broker's own origin)",
    example: 'https://app.example.com,https://*.example.com',
  }),
  BROKER_API_KEYS: list
    .pipe(
      z.array(z.string()).superRefine((keys, context) => {
        keys.forEach((key, index) => {
          if (key.length >= 32) return;
          // Which key, by position: the list is a secret, so the key itself is never shown.
          const rule =
            'each key must be at least 32 characters: make one with `openssl rand -base64 32` (or give its sha256:<hex> hash)';
          context.addIssue({
            code: 'custom',
            message:
              keys.length === 1
                ? rule
                : `key ${index + 1} of ${keys.length} has ${key.length} characters; ${rule}`,
          });
        });
      }),
    )
    .meta({
      description:
        'comma-separated API keys for `/api/auth/claim`, `/api/upstream-token`, introspection and revocation, each at least 32 characters, plain or as `sha256:<hex>` of the key',
      example: '$(openssl rand -base64 32)',
    }),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000, 10_000).meta({
    description: 'how long SIGTERM waits for in-flight requests, in ms',
    example: '10000',
  }),
  METRICS_PORT: optionalInt(1, 65_535).meta({
    description: 'serve `/metrics` on this port only, not on `PORT`. Empty: on `PORT`',
    example: '9464',
  }),
  METRICS_REQUIRE_API_KEY: z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')).meta({
    description:
      '`true`: scrapers of `/metrics` send a broker API key (`Authorization: Bearer`); in production `/metrics` on `PORT` always needs it (or set `METRICS_PORT`)',
    example: 'true',
  }),
});

export const serverSecrets = ['BROKER_API_KEYS'] as const;

type ServerEnv = z.infer<typeof serverSchema>;

export interface ServerConfig {
  nodeEnv: ServerEnv['NODE_ENV'];
  production: boolean;
  port: number;
  host: string;
  trustProxy: false | number | string[];
  logLevel: ServerEnv['LOG_LEVEL'];
  /** Normalised exact origins and `https://*.example.com` patterns. */
  allowedOrigins: string[];
  apiKeys: string[];
  shutdownTimeoutMs: number;
  metrics: {
    /** Serve `/metrics` on this port only (and not on the main one); undefined: on the main port. */
    port: number | undefined;
    /**
     * Ask scrapers for a broker API key (`Authorization: Bearer`): when `METRICS_REQUIRE_API_KEY=true`,
     * and always in production when `/metrics` is served on the traffic port.
     */
    requireApiKey: boolean;
  };
}

export function serverConfig(e: ServerEnv, problems: string[]): ServerConfig {
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT === e.PORT) {
    problems.push('METRICS_PORT: must differ from PORT (leave it empty to serve /metrics on PORT)');
  }
  const production = e.NODE_ENV === 'production';
  return {
    nodeEnv: e.NODE_ENV,
    production,
    port: e.PORT,
    host: e.HOST ?? (production ? '0.0.0.0' : '127.0.0.1'),
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    allowedOrigins: normalizeAllowedOrigins(e.ALLOWED_ORIGINS),
    apiKeys: e.BROKER_API_KEYS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    metrics: {
      port: e.METRICS_PORT,
      // In production the traffic port is public: /metrics there needs the API key, or its own port.
      requireApiKey: e.METRICS_REQUIRE_API_KEY === 'true' || (production && e.METRICS_PORT === undefined),
    },
  };
}
