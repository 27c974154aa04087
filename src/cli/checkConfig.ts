import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { config as loadDotenv } from 'dotenv';
import { devOrigins } from '../caller/origins.js';
import { type Config, ConfigError, loadConfig, secretSettings } from '../config/index.js';
import { configWarnings } from '../config/startupChecks.js';
import { secretSuffixes } from '../config/upstreamNames.js';
import { formatAllowRules } from '../proxy/allowRules.js';
import type { CredentialPlacement } from '../proxy/credentialPlacement.js';
import { describeRedisTarget } from '../store/redisTarget.js';
import { CliFailure, type Command, parseUsage, redact, UsageError } from './context.js';
import { checkSigningKeys, type JwkSet } from './jwks.js';
import { probe } from './probe.js';

/** A secret setting's value, and each key of the BROKER_API_KEYS list, so that each can be scrubbed. */
function remember(secrets: Set<string>, name: string, value: string | undefined): void {
  if (!value) return;
  secrets.add(value.trim());
  if (name === 'BROKER_API_KEYS') for (const key of value.split(',')) secrets.add(key.trim());
}

/** A URL without user info: an issuer or token URL could carry credentials. */
function showUrl(value: string): string {
  const url = new URL(value);
  url.username = '';
  url.password = '';
  return url.href;
}

/**
 * How the upstream authenticates the broker, as the profile really sends it: the json and bloq bodies
 * carry the secret themselves, whatever `UPSTREAM_AUTH_METHOD` says.
 */
function authSummary({ profile, authMethod, tlsClient }: Config['upstreams'][number]['config']): string {
  if (authMethod === 'private_key_jwt') return 'private_key_jwt (a signed assertion; no secret is sent)';
  if (authMethod === 'client_assertion_file') {
    return 'client_assertion_file (a JWT the platform issued, read from its file; no secret is sent)';
  }
  if (tlsClient) {
    // The thumbprint is public (it is in every certificate-bound token) and tells which certificate is loaded.
    return `${authMethod} (client certificate x5t#S256 ${tlsClient.thumbprint}; no secret is sent)`;
  }
  if (profile === 'json') return 'client_id and client_secret in the JSON body (json profile)';
  if (profile === 'bloq') return 'clientId and clientSecret in the JSON body (bloq profile)';
  return authMethod;
}

function describeUpstreams(config: Config): [string, string][] {
  if (config.upstreams.length === 0)
    return [['upstream', 'none: the dev upstream starts (development only)']];
  return config.upstreams.flatMap(({ name, config: upstream, allowedOrigins, inherited }) => {
    // Without UPSTREAMS the one upstream keeps the labels it always had.
    const label = (row: string) => (config.namedUpstreams ? `${name} ${row}` : row);
    const rows: [string, string][] = upstream.apiKey
      ? [[label('upstream'), 'static API key (no grant)']]
      : [
          [
            label('upstream'),
            upstream.tokenUrl
              ? `token URL ${showUrl(upstream.tokenUrl)}`
              : `issuer ${showUrl(upstream.issuer ?? '')}`,
          ],
          [label('client id'), upstream.clientId],
          [label('profile'), upstream.profile],
          [label('auth method'), authSummary(upstream)],
        ];
    if (upstream.audience) rows.push([label('audience'), upstream.audience]);
    if (upstream.scope) rows.push([label('scope'), upstream.scope]);
    if (upstream.resource) rows.push([label('resource'), showUrl(upstream.resource)]);
    const proxyPath = config.namedUpstreams ? `/api/proxy/${name}` : '/api/proxy';
    rows.push([label('api url'), upstream.apiUrl ? showUrl(upstream.apiUrl) : `none (${proxyPath} is off)`]);
    if (upstream.apiUrl) {
      rows.push([label('credential in'), credentialPlacementLabel(upstream.credentialIn)]);
      rows.push([
        label('allow'),
        upstream.allow ? formatAllowRules(upstream.allow) : 'unset: opens every method and path',
      ]);
    }
    if (allowedOrigins) rows.push([label('allowed origins'), allowedOrigins.join(', ')]);
    rows.push([
      label('timeouts'),
      `${upstream.timeoutMs} ms per upstream request, ${upstream.apiTimeoutMs} ms per API call, ${upstream.streamIdleMs} ms stream idle${upstream.apiKey ? '' : `, ${upstream.defaultTtlSeconds} s token lifetime when unsaid`}`,
    ]);
    // The values above that came from a shared default rather than the name's own settings.
    if (inherited.length > 0) rows.push([label('shared'), `from ${inherited.join(', ')}`]);
    return rows;
  });
}

function credentialPlacementLabel(placement: CredentialPlacement | undefined): string {
  if (placement === undefined || placement.in === 'authorization') return 'authorization (Bearer)';
  return placement.in === 'header' ? `header ${placement.name}` : `query parameter ${placement.param}`;
}

/** The origins the server will allow: with the dev upstream and none set, its own origin. */
function allowedOrigins(config: Config): string {
  if (config.allowedOrigins.length > 0) return config.allowedOrigins.join(', ');
  if (config.upstreams.length === 0 && !config.production) {
    return `${devOrigins(config.port).join(', ')} (development default, for the demo page)`;
  }
  return 'none: every page is refused at /api/client-token';
}

function summary(config: Config): string {
  const keys = config.signingKeys?.keys;
  const rows: [string, string][] = [
    ['environment', config.nodeEnv],
    ['listen', `${config.host}:${config.port}`],
    ...describeUpstreams(config),
    ['allowed origins', allowedOrigins(config)],
    [
      'signing keys',
      keys
        ? `${keys.length} (signing kid ${String(keys[0]?.kid ?? 'none')}, ${String(keys[0]?.alg ?? keys[0]?.kty)})`
        : 'none: an ephemeral key is made at start-up (development only)',
    ],
    ['api keys', String(config.apiKeys.length)],
    ['client tokens', `ttl ${config.clientToken.ttlSeconds} s, ip binding ${config.clientToken.bindIp}`],
    ['trust proxy', JSON.stringify(config.trustProxy)],
    ['redis', describeRedisTarget(config.redisTarget)],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  return rows.map(([label, value]) => `  ${`${label}:`.padEnd(width)}${value}`).join('\n');
}

/** `token-broker check-config`: the server's own configuration check, without starting it. */
export const checkConfigCommand: Command = {
  name: 'check-config',
  summary: 'validate the environment (and .env) the way the server does',
  help: `Usage: token-broker check-config [--dotenv <path>]

Reads the environment, and a .env file in the current directory when there is one, exactly
as the server does (variables already set win over .env), then checks every setting. Prints
"configuration OK" and a short summary, or every problem, one per line, and exits 1.
Secret values (client secret, API keys, signing keys) are never printed.

Options:
  --dotenv <path>   read this file instead of ./.env (it must exist)
  --probe           then contact what the settings name: ask each upstream's authorization server for a
                    real token (dropped at once) and PING Redis, one line each; exits 1 if any fails
  -h, --help        show this help`,
  async run(args, ctx) {
    // Not "--env-file": Node 20 takes that flag for itself even after the script name.
    const options = { dotenv: { type: 'string' }, probe: { type: 'boolean' } } as const;
    const { values, positionals } = parseUsage(
      () => parseArgs({ args, options, allowPositionals: true }),
      Object.keys(options),
    );
    if (positionals.length > 0) throw new UsageError('unexpected argument');
    const env = { ...ctx.env };
    const envFile = resolve(ctx.cwd, values.dotenv ?? '.env');
    if (values.dotenv !== undefined && !existsSync(envFile)) {
      throw new CliFailure(`cannot read ${values.dotenv} (ENOENT)`);
    }
    if (existsSync(envFile)) {
      const { error } = loadDotenv({ path: envFile, quiet: true, processEnv: env });
      if (error)
        throw new CliFailure(`cannot read ${envFile} (${(error as { code?: string }).code ?? 'error'})`);
    }
    const { secrets } = ctx;
    // Named upstreams carry their secrets under their own prefix (UPSTREAM_<NAME>_CLIENT_SECRET).
    const namedSecret = new RegExp(`^UPSTREAM_[A-Z0-9_]+_(${secretSuffixes.join('|')})$`);
    const secretNames = [
      ...secretSettings,
      ...Object.keys(env)
        .map((name) => name.replace(/_FILE$/, ''))
        .filter((name) => namedSecret.test(name)),
    ];
    for (const name of secretNames) remember(secrets, name, env[name]);
    const readFile = (path: string) => {
      const text = readFileSync(path, 'utf8');
      for (const name of secretNames) if (env[`${name}_FILE`] === path) remember(secrets, name, text);
      return text;
    };

    const problems: string[] = [];
    let config: Config | undefined;
    try {
      config = loadConfig(env, { readFile });
      if (config.signingKeys) {
        const keyProblems = await checkSigningKeys(config.signingKeys as JwkSet);
        problems.push(...keyProblems.map((problem) => `SIGNING_KEYS: ${problem}`));
      }
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
    }
    if (!config || problems.length > 0) {
      ctx.stderr(
        redact(`configuration invalid:\n${problems.map((line) => `  - ${line}`).join('\n')}\n`, secrets),
      );
      return 1;
    }
    const warnings = configWarnings(config, { devUpstream: config.upstreams.length === 0 });
    ctx.stdout(
      redact(
        `configuration OK\n${summary(config)}\n${warnings.map((warning) => `warning: ${warning.message}\n`).join('')}`,
        secrets,
      ),
    );
    if (!values.probe) return 0;
    const results = await probe(config);
    ctx.stdout(redact(results.map(({ line }) => `probe: ${line}\n`).join(''), secrets));
    return results.every(({ ok }) => ok) ? 0 : 1;
  },
};
