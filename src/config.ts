import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  type ClientTokensConfig,
  clientTokensConfig,
  clientTokensSchema,
  clientTokensSecrets,
} from './config/clientTokens.js';
import { type LimitsConfig, limitsConfig, limitsSchema } from './config/limits.js';
import { issueProblems, resolveSecretFiles } from './config/parse.js';
import { type RedisConfig, redisConfig, redisSchema, redisSecrets } from './config/redis.js';
import { type ServerConfig, serverConfig, serverSchema, serverSecrets } from './config/server.js';
import { upstreamSchema, upstreamSecrets } from './config/upstream.js';
import { type UpstreamsConfig, upstreamsConfig, upstreamsSchema } from './config/upstreams.js';

export type { RateLimitRule } from './config/fields.js';
export type { UpstreamConfig } from './config/upstream.js';
export type { NamedUpstream } from './config/upstreams.js';

/** Settings whose value is a secret: they may come from `NAME_FILE`, and are never echoed in errors. */
export const secretSettings = [
  ...clientTokensSecrets,
  ...serverSecrets,
  ...upstreamSecrets,
  ...redisSecrets,
] as const;

export const envSchema = z.object({
  ...serverSchema.shape,
  ...clientTokensSchema.shape,
  ...upstreamSchema.shape,
  ...upstreamsSchema.shape,
  ...redisSchema.shape,
  ...limitsSchema.shape,
});

export type Env = z.infer<typeof envSchema>;

export interface Config
  extends ServerConfig,
    ClientTokensConfig,
    UpstreamsConfig,
    RedisConfig,
    LimitsConfig {}

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
  const parsed = envSchema.safeParse(resolveSecretFiles(env, secretSettings, readFile, problems));
  if (!parsed.success) {
    problems.push(...issueProblems(parsed.error.issues, secretSettings));
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const server = serverConfig(e, problems);
  const config: Config = {
    ...server,
    ...clientTokensConfig(e, server.production, problems),
    ...upstreamsConfig({
      env,
      names: e.UPSTREAMS,
      unprefixedEnv: e,
      production: server.production,
      readFile,
      problems,
    }),
    ...redisConfig(e, readFile, problems),
    ...limitsConfig(e),
  };
  // Without the dev upstream no key is generated later, so every scrape would be refused.
  if (e.METRICS_REQUIRE_API_KEY === 'true' && config.upstreams.length > 0 && config.apiKeys.length === 0) {
    problems.push('METRICS_REQUIRE_API_KEY: needs BROKER_API_KEYS (or BROKER_API_KEYS_FILE)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
