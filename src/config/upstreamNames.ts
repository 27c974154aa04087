import { upstreamSchema, upstreamSecrets } from './upstreamSettings.js';

/**
 * What an upstream name may be, and which variables belong to which name: `UPSTREAM_<NAME>_<SETTING>`,
 * the name upper-cased and `-` turned into `_`.
 */

export const upstreamNamePattern = /^[a-z0-9-]{1,32}$/;
/** Every name travels in each client token's `upstreams` claim, so their number is bounded. */
export const maxUpstreams = 64;

/** `TOKEN_URL`, `CLIENT_SECRET`, ...: what follows `UPSTREAM_` (or `UPSTREAM_<NAME>_`) in a setting. */
export const suffixes = Object.keys(upstreamSchema.shape)
  .filter((name) => name.startsWith('UPSTREAM_'))
  .map((name) => name.slice('UPSTREAM_'.length));
export const secretSuffixes = upstreamSecrets.map((name) => name.slice('UPSTREAM_'.length));
/** Every setting an upstream listed in `UPSTREAMS` reads, after its prefix. */
export const namedSuffixes = [
  ...suffixes,
  ...secretSuffixes.map((suffix) => `${suffix}_FILE`),
  'ALLOWED_ORIGINS',
];
export const unprefixed = new Set([
  ...suffixes.map((suffix) => `UPSTREAM_${suffix}`),
  ...upstreamSecrets.map((name) => `${name}_FILE`),
]);

/**
 * What belongs to one API, so is set under each name and never shared: its address and key, which calls it
 * takes and how it reads its credential, and the budgets (a shared budget would read as one pool, though each
 * upstream counts its own).
 */
export const perUpstreamSuffixes = [
  'API_URL',
  'API_KEY',
  'API_KEY_FILE',
  'ALLOW',
  'CREDENTIAL_IN',
  'TOKEN_QUOTA',
  'CALL_QUOTA',
];
/** The settings an unprefixed `UPSTREAM_<SETTING>` gives every named upstream that has none of its own. */
export const sharedSuffixes = namedSuffixes.filter(
  (suffix) => suffix !== 'ALLOWED_ORIGINS' && !perUpstreamSuffixes.includes(suffix),
);
/** What an upstream with its own API key takes of the shared settings: it has no grant. */
export const apiKeySharedSuffixes = ['TIMEOUT_MS', 'API_TIMEOUT_MS', 'STREAM_IDLE_TIMEOUT_MS'];
/**
 * Settings inherited whole or not at all: one token endpoint (a shared issuer next to an own token URL
 * would leave two), and one client credential (a shared key next to an own secret would be sent beside it).
 */
export const endpointSuffixes = ['ISSUER', 'TOKEN_URL'];
export const credentialSuffixes = [
  'CLIENT_SECRET',
  'CLIENT_SECRET_FILE',
  'CLIENT_KEY',
  'CLIENT_KEY_FILE',
  'CLIENT_ASSERTION_FILE',
  // A client certificate, its key and the CAs it trusts make one identity (tlsClientIdentity.ts).
  'TLS_CERT_FILE',
  'TLS_KEY_FILE',
  'TLS_CA_FILE',
];

/** `UPSTREAM_ENTRY_TOKEN_URL` → `UPSTREAM_TOKEN_URL`; any other name as it is. */
export function unprefixedName(name: string): string {
  if (!name.startsWith('UPSTREAM_') || unprefixed.has(name)) return name;
  const suffix = namedSuffixes
    .filter((candidate) => candidate !== 'ALLOWED_ORIGINS' && name.endsWith(`_${candidate}`))
    .sort((a, b) => b.length - a.length)[0];
  return suffix ? `UPSTREAM_${suffix}` : name;
}

/** The setting that turns on an upstream's proxy, and the route it serves. */
export function proxySetting(name: string, named: boolean): { setting: string; route: string } {
  return named
    ? { setting: `${upstreamPrefix(name)}API_URL`, route: `/api/proxy/${name}/*` }
    : { setting: 'UPSTREAM_API_URL', route: '/api/proxy/*' };
}

/** `entry-api` → `UPSTREAM_ENTRY_API_`. */
export const upstreamPrefix = (name: string) => `UPSTREAM_${name.toUpperCase().replaceAll('-', '_')}_`;

export const isSet = (value: string | undefined) => value !== undefined && value.trim() !== '';

/**
 * The unprefixed setting that the name's prefix starts, if any. The unprefixed settings are every upstream's
 * defaults, so `api` would make UPSTREAM_API_TIMEOUT_MS both theirs and its own TIMEOUT_MS, and `default`
 * would make UPSTREAM_DEFAULT_TTL read as its own.
 */
const sharedClash = (name: string) =>
  [...unprefixed].find((variable) => variable.startsWith(upstreamPrefix(name)));

/** The usable names of `UPSTREAMS`; each refused one is reported in one line. */
export function validNames(names: string[], problems: string[]): string[] {
  const seen = new Set<string>();
  /** Every prefixed variable of the names kept so far, and whose it is. */
  const owners = new Map<string, string>();
  return names.filter((name) => {
    if (!upstreamNamePattern.test(name)) {
      problems.push(`UPSTREAMS: "${name}" is not a name (a-z, 0-9 and -, at most 32 characters)`);
      return false;
    }
    if (seen.has(name)) {
      problems.push(`UPSTREAMS: "${name}" is listed twice`);
      return false;
    }
    seen.add(name);
    const clash = sharedClash(name);
    if (clash) {
      problems.push(
        `UPSTREAMS: "${name}" cannot be a name: ${clash} is a setting shared by every upstream and would read as one of "${name}"'s; rename it (e.g. "my-${name}")`,
      );
      return false;
    }
    // `entry` and `entry-api` would both read UPSTREAM_ENTRY_API_TIMEOUT_MS.
    const variables = namedSuffixes.map((suffix) => upstreamPrefix(name) + suffix);
    const shared = variables.find((variable) => owners.has(variable));
    if (shared) {
      problems.push(
        `UPSTREAMS: "${name}" and "${owners.get(shared)}" cannot both be names: ${shared} would belong to both`,
      );
      return false;
    }
    for (const variable of variables) owners.set(variable, name);
    return true;
  });
}

/** Every `UPSTREAM_<NAME>_<SETTING>` whose name is not listed, so no setting is silently ignored. */
export function unlistedSettings(env: Record<string, string | undefined>, names: string[]): string[] {
  const prefixes = names.map(upstreamPrefix);
  const problems: string[] = [];
  for (const [variable, value] of Object.entries(env)) {
    if (!variable.startsWith('UPSTREAM_') || unprefixed.has(variable) || !isSet(value)) continue;
    if (variable === 'UPSTREAM_ALLOWED_ORIGINS') {
      // The one per-name setting without a shared form: the broker's own list is every upstream's default.
      problems.push(`${variable}: not a setting; did you mean ALLOWED_ORIGINS (every upstream's default)?`);
      continue;
    }
    // `UPSTREAM_X_API_TIMEOUT_MS` ends in both TIMEOUT_MS and API_TIMEOUT_MS: any reading may be the listed one.
    const matching = namedSuffixes.filter(
      (candidate) => variable.endsWith(`_${candidate}`) && variable.length > `UPSTREAM__${candidate}`.length,
    );
    if (matching.some((suffix) => prefixes.some((prefix) => variable === prefix + suffix))) continue;
    const suffix = matching.sort((a, b) => b.length - a.length)[0];
    if (suffix === undefined) continue;
    const name = variable
      .slice('UPSTREAM_'.length, -suffix.length - 1)
      .toLowerCase()
      .replaceAll('_', '-');
    if (sharedClash(name)) {
      // `UPSTREAM_DEFAULT_TOKEN_URL`: the shared defaults have no prefix, and no upstream can be named so.
      problems.push(
        `${variable}: not a setting (no upstream can be named "${name}"); did you mean UPSTREAM_${suffix}?`,
      );
      continue;
    }
    problems.push(
      names.length === 0
        ? `${variable}: names upstream "${name}", but UPSTREAMS is not set (list it, e.g. UPSTREAMS=${name},...)`
        : `${variable}: names upstream "${name}", which UPSTREAMS (${names.join(',')}) does not list`,
    );
  }
  return problems;
}
