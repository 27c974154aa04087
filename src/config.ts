import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  type ClientTokensConfig,
  clientTokensConfig,
  clientTokensSchema,
  clientTokensSecrets,
} from './config/clientTokens.js';
import { type LimitsConfig, limitsConfig, limitsSchema } from './config/limits.js';
import { defaultText, secretFileExample, settingMeta } from './config/meta.js';
import { type RedisConfig, redisConfig, redisSchema, redisSecrets } from './config/redis.js';
import { type ServerConfig, serverConfig, serverSchema, serverSecrets } from './config/server.js';
import { type UpstreamConfig, upstreamConfig, upstreamSchema, upstreamSecrets } from './config/upstream.js';

export type { RateLimitRule } from './config/fields.js';
export type { UpstreamConfig } from './config/upstream.js';

/** Settings whose value is a secret: they may come from `NAME_FILE`, and are never echoed in errors. */
export const secretSettings = [
  ...clientTokensSecrets,
  ...serverSecrets,
  ...upstreamSecrets,
  ...redisSecrets,
] as const;

/** The parts of the configuration, in the order docs/configuration.md presents them. */
export const configParts = [
  {
    title: 'Server',
    intro: 'Where the broker listens, who may call it, and how it reports.',
    schema: serverSchema,
  },
  {
    title: 'Client tokens',
    intro: 'What the broker mints for browsers: lifetime, binding and the keys that sign.',
    schema: clientTokensSchema,
  },
  {
    title: 'Upstream',
    intro: 'The authorization server the broker gets tokens from, and the API those tokens open.',
    schema: upstreamSchema,
  },
  {
    title: 'Redis',
    intro: 'The shared Redis of a fleet of replicas (see [fleet](fleet.md)).',
    schema: redisSchema,
  },
  { title: 'Limits', intro: 'How much one caller may ask for.', schema: limitsSchema },
] as const;

export const envSchema = z.object({
  ...serverSchema.shape,
  ...clientTokensSchema.shape,
  ...upstreamSchema.shape,
  ...redisSchema.shape,
  ...limitsSchema.shape,
});

export type Env = z.infer<typeof envSchema>;

export interface Config extends ServerConfig, ClientTokensConfig, RedisConfig, LimitsConfig {
  /** Undefined outside production means "start the dev upstream"; in production it is a start-up error. */
  upstream: UpstreamConfig | undefined;
}

/** A valid value of a setting (or of its `NAME_FILE` form), for the problem reported about it. */
function exampleOf(name: string): string | undefined {
  const secret = secretSettings.find((setting) => `${setting}_FILE` === name);
  if (secret) return secretFileExample(secret);
  const schema = (envSchema.shape as Record<string, z.ZodType | undefined>)[name];
  return schema && (settingMeta(schema)?.example ?? defaultText(schema));
}

/**
 * `NAME: what is wrong, e.g. NAME=<a valid value>`, unless the problem already gives one; when NAME
 * "needs OTHER", the example is OTHER's, the setting to add.
 */
function withExample(problem: string): string {
  const name = /\bneeds ([A-Z][A-Z0-9_]+)/.exec(problem)?.[1] ?? problem.slice(0, problem.indexOf(':'));
  const example = problem.includes('e.g.') ? undefined : exampleOf(name);
  return example === undefined ? problem : `${problem}, e.g. ${name}=${example}`;
}

/** Every problem found in the environment, one line each with a valid example; `message` lists them all. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(found: string[]) {
    const problems = found.map(withExample);
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  readFile?: (path: string) => string;
}

/** The environment with every `NAME_FILE` secret read into `NAME`. */
function resolveSecretFiles(
  env: Record<string, string | undefined>,
  readFile: (path: string) => string,
  problems: string[],
): Record<string, string | undefined> {
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
  return resolved;
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
  const parsed = envSchema.safeParse(resolveSecretFiles(env, readFile, problems));
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      // zod's default messages may quote the input; for secrets, name the rule only.
      const secret = (secretSettings as readonly string[]).includes(name);
      const message =
        secret && issue.code === 'invalid_type'
          ? 'has the wrong type'
          : issue.code === 'invalid_value'
            ? `must be one of ${issue.values.join(', ')}`
            : issue.message;
      problems.push(`${name}: ${message}`);
    }
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const server = serverConfig(e, problems);
  const config: Config = {
    ...server,
    ...clientTokensConfig(e, server.production, problems),
    upstream: upstreamConfig(e, server.production, problems),
    ...redisConfig(e, problems),
    ...limitsConfig(e),
  };
  // Without the dev upstream no key is generated later, so every scrape would be refused.
  if (config.metrics.requireApiKey && config.upstream && config.apiKeys.length === 0) {
    problems.push('METRICS_REQUIRE_API_KEY: needs BROKER_API_KEYS (or BROKER_API_KEYS_FILE)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
