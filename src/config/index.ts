import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  type AttestationConfig,
  attestationConfig,
  attestationSchema,
  attestationSecrets,
} from './attestation.js';
import {
  type ClientTokensConfig,
  clientTokensConfig,
  clientTokensSchema,
  clientTokensSecrets,
} from './clientTokens.js';
import { type LimitsConfig, limitsConfig, limitsSchema } from './limits.js';
import { defaultText, secretFileExample, settingMeta } from './meta.js';
import { type UpstreamsConfig, upstreamsConfig, upstreamsSchema } from './namedUpstreams.js';
import { issueProblems, resolveSecretFiles } from './parse.js';
import { type RedisConfig, redisConfig, redisSchema, redisSecrets } from './redis.js';
import { type ServerConfig, serverConfig, serverSchema, serverSecrets } from './server.js';
import { misspelledSettings } from './typos.js';
import { namedSuffixes, unprefixedName, upstreamPrefix } from './upstreamNames.js';
import { upstreamSchema, upstreamSecrets } from './upstreamSettings.js';

export type { RateLimitRule } from './fields.js';
export type { NamedUpstream } from './namedUpstreams.js';
export type { UpstreamConfig } from './upstreamSettings.js';

/** Settings whose value is a secret: they may come from `NAME_FILE`, and are never echoed in errors. */
export const secretSettings = [
  ...clientTokensSecrets,
  ...attestationSecrets,
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
    intro:
      'What the broker mints for browsers: lifetime, binding, the keys that sign, and the proof asked before minting.',
    schema: z.object({ ...clientTokensSchema.shape, ...attestationSchema.shape }),
  },
  {
    title: 'Upstream',
    intro:
      'The authorization server the broker gets tokens from, and the API those tokens open. With `UPSTREAMS=a,b` each upstream takes every `UPSTREAM_*` setting below as `UPSTREAM_<NAME>_*` (the name upper-cased, `-` as `_`), plus `UPSTREAM_<NAME>_ALLOWED_ORIGINS`. An unprefixed one is then the default of every name without its own, except the settings of one API (`API_URL`, `API_KEY`, `ALLOW`, `CREDENTIAL_IN` and the quotas); see [several APIs](upstreams.md#shared-defaults).',
    schema: z.object({ ...upstreamsSchema.shape, ...upstreamSchema.shape }),
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
  ...attestationSchema.shape,
  ...upstreamSchema.shape,
  ...upstreamsSchema.shape,
  ...redisSchema.shape,
  ...limitsSchema.shape,
});

export type Env = z.infer<typeof envSchema>;

export interface Config
  extends ServerConfig,
    ClientTokensConfig,
    AttestationConfig,
    UpstreamsConfig,
    RedisConfig,
    LimitsConfig {}

/** A valid value of a setting (or of its `NAME_FILE` form), for the problem reported about it. */
function exampleOf(prefixed: string): string | undefined {
  // A named upstream's `UPSTREAM_ENTRY_TOKEN_URL` takes the example of `UPSTREAM_TOKEN_URL`.
  const name = unprefixedName(prefixed);
  const secret = secretSettings.find((setting) => `${setting}_FILE` === name);
  if (secret) return secretFileExample(secret);
  const schema = (envSchema.shape as Record<string, z.ZodType | undefined>)[name];
  return schema && (settingMeta(schema)?.example ?? defaultText(schema));
}

/** Lines that ask to drop or move a setting, or to replace a placeholder, where an example of its value would mislead. */
const dropSetting =
  /\b(not a setting|only used|not used|set together|keep one|set only one|listed twice|does not list|cannot be a name|placeholder)\b/;

/**
 * `NAME: what is wrong, e.g. NAME=<a valid value>`, unless the problem already shows a value or asks to
 * drop the setting; when NAME "needs OTHER", the example is OTHER's, the setting to add.
 */
function withExample(problem: string): string {
  const name = /\bneeds ([A-Z][A-Z0-9_]+)/.exec(problem)?.[1] ?? problem.slice(0, problem.indexOf(':'));
  const shown = problem.includes('e.g.') || problem.includes(`${name}=`) || dropSetting.test(problem);
  const example = shown ? undefined : exampleOf(name);
  return example === undefined ? problem : `${problem}, e.g. ${name}=${example}`;
}

/** Every problem found in the environment, one line each with a valid example; `message` lists them all. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(found: string[]) {
    // A shared default that is wrong is wrong for every named upstream that takes it: one line, not one each.
    const problems = [...new Set(found)].map(withExample);
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Every variable the broker reads from `env`, the prefixed settings of its named upstreams included. */
function knownSettings(env: Record<string, string | undefined>): Set<string> {
  const names = (env.UPSTREAMS ?? '').split(',').map((name) => name.trim().toLowerCase());
  return new Set([
    ...Object.keys(envSchema.shape),
    ...secretSettings.map((name) => `${name}_FILE`),
    ...names.filter(Boolean).flatMap((name) => namedSuffixes.map((suffix) => upstreamPrefix(name) + suffix)),
  ]);
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
  const problems = misspelledSettings(env, knownSettings(env));
  const placeholders = new Set<string>();
  const resolved = resolveSecretFiles(env, secretSettings, readFile, problems, undefined, placeholders);
  const parsed = envSchema.safeParse(resolved);
  if (!parsed.success) {
    problems.push(...issueProblems(parsed.error.issues, secretSettings, undefined, placeholders));
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const server = serverConfig(e, problems);
  const config: Config = {
    ...server,
    ...clientTokensConfig(e, server.production, problems),
    ...attestationConfig(e, problems),
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
