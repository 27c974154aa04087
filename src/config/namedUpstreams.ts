import { z } from 'zod';
import { tokenIdentity } from '../upstream/cacheKey.js';
import { list } from './fields.js';
import { issueProblems, resolveSecretFiles } from './parse.js';
import { allowedOriginsField, normalizeAllowedOrigins } from './server.js';
import {
  apiKeySharedSuffixes,
  credentialSuffixes,
  endpointSuffixes,
  isSet,
  maxUpstreams,
  perUpstreamSuffixes,
  secretSuffixes,
  sharedSuffixes,
  suffixes,
  unlistedSettings,
  unprefixed,
  upstreamPrefix,
  validNames,
} from './upstreamNames.js';
import { type UpstreamConfig, upstreamConfig, upstreamSchema, upstreamSecrets } from './upstreamSettings.js';

export { maxUpstreams, upstreamNamePattern } from './upstreamNames.js';

/**
 * Several upstreams behind one broker (`UPSTREAMS=uitpas,entry`), each configured by the settings of
 * upstreamSettings.ts under its own prefix (`UPSTREAM_UITPAS_TOKEN_URL`), an unprefixed one being the
 * default of every name that has none of its own (`UPSTREAM_TIMEOUT_MS`). Without `UPSTREAMS` the
 * unprefixed settings are the one upstream `default`, as before.
 */
export const upstreamsSchema = z.object({
  UPSTREAMS: list.meta({
    description:
      'names of several upstreams (a-z, 0-9 and -, at most 32 characters), each configured as `UPSTREAM_<NAME>_*`, an unprefixed `UPSTREAM_*` being the shared default (see [shared defaults](upstreams.md#shared-defaults)). Empty: one upstream, `default`, from the unprefixed settings',
    example: 'uitpas,entry',
  }),
});

/** The upstream of the unprefixed settings, and of client tokens minted before names existed. */
export const defaultUpstreamName = 'default';

export interface NamedUpstream {
  name: string;
  config: UpstreamConfig;
  /**
   * `UPSTREAM_<NAME>_ALLOWED_ORIGINS`: the origins whose client tokens may open this upstream.
   * Undefined: every origin the broker admits (`ALLOWED_ORIGINS`, or an API key's choice at the claim route).
   */
  allowedOrigins: string[] | undefined;
  /** The unprefixed variables (shared defaults) it took a value from; empty without `UPSTREAMS`. */
  inherited: string[];
}

export interface UpstreamsConfig {
  /** Empty outside production when nothing is configured: main.ts then starts the dev upstream. */
  upstreams: NamedUpstream[];
  /** `UPSTREAMS` is set: proxy routes carry the name (`/api/proxy/<name>/*`). */
  namedUpstreams: boolean;
}

/** Token settings that upstreams sharing one token (and so one cache) must agree on. */
const sharedTokenSettings: [keyof UpstreamConfig, string][] = [
  ['timeoutMs', 'TIMEOUT_MS'],
  ['defaultTtlSeconds', 'DEFAULT_TTL'],
  ['clientAssertionAudience', 'CLIENT_ASSERTION_AUDIENCE'],
  ['tokenQuota', 'TOKEN_QUOTA'],
  ['issuer', 'ISSUER'],
];

export interface UpstreamsInput {
  env: Record<string, string | undefined>;
  names: string[];
  /** The parsed unprefixed settings: the `default` upstream when `names` is empty. */
  unprefixedEnv: z.infer<typeof upstreamSchema>;
  production: boolean;
  readFile: (path: string) => string;
  problems: string[];
}

export function upstreamsConfig({
  env,
  names,
  unprefixedEnv,
  production,
  readFile,
  problems,
}: UpstreamsInput): UpstreamsConfig {
  problems.push(...unlistedSettings(env, names));
  if (names.length === 0) {
    const config = upstreamConfig(unprefixedEnv, production, problems, readFile);
    return {
      upstreams: config
        ? [{ name: defaultUpstreamName, config, allowedOrigins: undefined, inherited: [] }]
        : [],
      namedUpstreams: false,
    };
  }
  for (const suffix of perUpstreamSuffixes) {
    if (isSet(env[`UPSTREAM_${suffix}`])) {
      problems.push(
        `UPSTREAM_${suffix}: not used with UPSTREAMS (it belongs to one API, so it is never shared); set UPSTREAM_<NAME>_${suffix} for each upstream instead`,
      );
    }
  }
  if (names.length > maxUpstreams) {
    problems.push(`UPSTREAMS: lists ${names.length} upstreams; at most ${maxUpstreams} are possible`);
  }
  const valid = validNames(names, problems);
  const upstreams = valid.flatMap((name) => {
    const upstream = namedUpstream(name, env, readFile, problems);
    return upstream ? [upstream] : [];
  });
  problems.push(...disagreements(upstreams));
  return { upstreams, namedUpstreams: true };
}

/**
 * The shared settings an upstream takes: each one it has none of its own of, a token endpoint or a client
 * credential whole; with an API key of its own, only the timeouts (it has no grant).
 */
function inheritedSuffixes(prefix: string, env: Record<string, string | undefined>): string[] {
  const own = (suffix: string) => isSet(env[prefix + suffix]);
  const candidates = own('API_KEY') || own('API_KEY_FILE') ? apiKeySharedSuffixes : sharedSuffixes;
  return candidates.filter((suffix) => isSet(env[`UPSTREAM_${suffix}`]) && !inheritedWhole(suffix).some(own));
}

/** The settings taken from the same place as `suffix`: its token endpoint or client credential, or itself. */
const inheritedWhole = (suffix: string) =>
  [endpointSuffixes, credentialSuffixes].find((group) => group.includes(suffix)) ?? [suffix];

/**
 * A shared client credential is sent only to the shared token endpoint: an upstream with an endpoint of its
 * own must bring its own credential, or the secret of one authorization server would reach another.
 */
function strayCredential(
  name: string,
  prefix: string,
  env: Record<string, string | undefined>,
  inherited: string[],
): string | undefined {
  const ownEndpoint = endpointSuffixes.find((suffix) => isSet(env[prefix + suffix]));
  const credential = inherited.find((suffix) => credentialSuffixes.includes(suffix));
  if (!ownEndpoint || !credential) return undefined;
  const setting = secretSuffixes.find((secret) => credential === `${secret}_FILE`) ?? credential;
  return `${prefix}${setting}: required, since "${name}" has its own ${prefix}${ownEndpoint} and the shared UPSTREAM_${credential} goes only to the shared token endpoint (UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER)`;
}

/**
 * One listed upstream: its prefixed settings, or the shared ones it inherits, parsed by the schema and
 * assembly of upstreamSettings.ts. Each problem names the variable its value came from.
 */
function namedUpstream(
  name: string,
  env: Record<string, string | undefined>,
  readFile: (path: string) => string,
  problems: string[],
): NamedUpstream | undefined {
  const prefix = upstreamPrefix(name);
  const inheritedFrom = inheritedSuffixes(prefix, env);
  // A secret and its `_FILE` form come from one place, though only one of them is set there.
  const source = (suffix: string) =>
    ([suffix, `${suffix}_FILE`, suffix.replace(/_FILE$/, '')].some((taken) => inheritedFrom.includes(taken))
      ? 'UPSTREAM_'
      : prefix) + suffix;
  const shown = (variable: string) =>
    variable.startsWith('UPSTREAM_') ? source(variable.slice('UPSTREAM_'.length)) : variable;
  // Messages of upstreamSettings.ts name the unprefixed variables; each line must name the one to fix.
  const rename = (line: string) =>
    line.replace(/\bUPSTREAM_([A-Z_]+)/g, (match, suffix: string) =>
      unprefixed.has(match) || suffixes.includes(suffix) ? source(suffix) : match,
    );
  const stray = strayCredential(name, prefix, env, inheritedFrom);
  if (stray) problems.push(stray);
  const own: Record<string, string | undefined> = { PROXY_MAX_REPLAY_BYTES: env.PROXY_MAX_REPLAY_BYTES };
  for (const suffix of [...suffixes, ...secretSuffixes.map((s) => `${s}_FILE`)]) {
    own[`UPSTREAM_${suffix}`] = env[source(suffix)];
  }
  const placeholders = new Set<string>();
  const resolved = resolveSecretFiles(own, upstreamSecrets, readFile, problems, shown, placeholders);
  const parsed = upstreamSchema.safeParse(resolved);
  const origins = allowedOriginsField.safeParse(env[`${prefix}ALLOWED_ORIGINS`]);
  if (!origins.success) {
    problems.push(...issueProblems(origins.error.issues, [], () => `${prefix}ALLOWED_ORIGINS`));
  }
  if (!parsed.success) {
    problems.push(...issueProblems(parsed.error.issues, upstreamSecrets, shown, placeholders));
    return undefined;
  }
  const ownProblems: string[] = [];
  const config = upstreamConfig(parsed.data, false, ownProblems, readFile);
  problems.push(...ownProblems.map(rename));
  if (!config) {
    problems.push(
      `${prefix}TOKEN_URL: upstream "${name}" is listed in UPSTREAMS but not configured (set ${prefix}TOKEN_URL or ${prefix}ISSUER, ${prefix}CLIENT_ID, ...)`,
    );
    return undefined;
  }
  const allowedOrigins =
    origins.success && origins.data.length > 0 ? normalizeAllowedOrigins(origins.data) : undefined;
  return { name, config, allowedOrigins, inherited: inheritedFrom.map((suffix) => `UPSTREAM_${suffix}`) };
}

/** Upstreams that get the same token share one cache, so its token settings must be the same. */
function disagreements(upstreams: NamedUpstream[]): string[] {
  const problems: string[] = [];
  const first = new Map<string, NamedUpstream>();
  for (const upstream of upstreams) {
    if (upstream.config.apiKey !== undefined) continue;
    const identity = tokenIdentity(upstream.config);
    const earlier = first.get(identity);
    if (!earlier) {
      first.set(identity, upstream);
      continue;
    }
    const variable = (of: NamedUpstream, suffix: string) =>
      of.inherited.includes(`UPSTREAM_${suffix}`) ? `UPSTREAM_${suffix}` : upstreamPrefix(of.name) + suffix;
    for (const [field, suffix] of sharedTokenSettings) {
      if (JSON.stringify(upstream.config[field]) !== JSON.stringify(earlier.config[field])) {
        problems.push(
          `${variable(upstream, suffix)}: "${upstream.name}" gets the same token as "${earlier.name}", so it must equal ${variable(earlier, suffix)}`,
        );
      }
    }
  }
  return problems;
}
