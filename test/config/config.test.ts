import { readFileSync } from 'node:fs';
import { parse } from 'dotenv';
import { describe, expect, it } from 'vitest';
import { envSchema, loadConfig, secretSettings } from '../../src/config/index.js';
import { configProblems } from '../support/expectErrors.js';

const upstream = {
  UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
  UPSTREAM_CLIENT_ID: 'broker',
  UPSTREAM_CLIENT_SECRET: 'an-upstream-secret-value',
};
const signingKeys = JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x', d: 'd' }] });

describe('loadConfig', () => {
  it('when nothing is set outside production, then defaults apply and no upstream is configured', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      production: false,
      trustProxy: false,
      upstreams: [],
      clientToken: { ttlSeconds: 900, bindIp: 'exact', ipv4Prefix: 24, ipv6Prefix: 64 },
    });
  });

  it('when several variables are bad, then every one is reported at once', () => {
    const problems = configProblems({
      PORT: 'eighty',
      CLIENT_TOKEN_TTL: '0',
      CLIENT_TOKEN_BIND_IP: 'sometimes',
      ALLOWED_ORIGINS: 'https://ok.example.com,ftp://files.example.com,https://example.com/path',
      UPSTREAM_PROFILE: 'soap',
      TRUST_PROXY: 'true',
      SIGNING_KEYS: '{not json',
    });
    const names = problems.map((problem) => problem.split(':')[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        'PORT',
        'CLIENT_TOKEN_TTL',
        'CLIENT_TOKEN_BIND_IP',
        'ALLOWED_ORIGINS',
        'UPSTREAM_PROFILE',
        'TRUST_PROXY',
        'SIGNING_KEYS',
      ]),
    );
    expect(problems.filter((problem) => problem.startsWith('ALLOWED_ORIGINS'))).toHaveLength(2);
  });

  it('when a secret is malformed, then the problem names the variable but never its value', () => {
    const secret = 'short-but-secret';
    const problems = configProblems({
      ...upstream,
      BROKER_API_KEYS: 'tiny',
      SIGNING_KEYS: `{"keys":"${secret}"}`,
    });
    const text = problems.join('\n');
    expect(text).toContain('BROKER_API_KEYS');
    expect(text).toContain('SIGNING_KEYS');
    expect(text).not.toContain('tiny');
    expect(text).not.toContain(secret);
  });

  it('when an upstream is half configured, then each missing part is named', () => {
    const problems = configProblems({ UPSTREAM_TOKEN_URL: upstream.UPSTREAM_TOKEN_URL });
    expect(problems).toEqual([
      expect.stringMatching(/^UPSTREAM_CLIENT_ID:/),
      expect.stringMatching(/^UPSTREAM_CLIENT_SECRET:/),
    ]);
  });

  it('when production has neither signing keys nor an upstream, then it refuses to start, naming both', () => {
    const problems = configProblems({ NODE_ENV: 'production' });
    expect(problems.some((problem) => problem.startsWith('SIGNING_KEYS:'))).toBe(true);
    expect(
      problems.some((problem) =>
        /^UPSTREAM_TOKEN_URL:.*production never starts the dev upstream/.test(problem),
      ),
    ).toBe(true);
  });

  it('when HOST is unset, then a dev broker binds loopback only and a production one every address', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
    expect(loadConfig({ HOST: '' }).host).toBe('127.0.0.1');
    expect(loadConfig({ NODE_ENV: 'production', SIGNING_KEYS: signingKeys, ...upstream }).host).toBe(
      '0.0.0.0',
    );
    expect(loadConfig({ HOST: '0.0.0.0' }).host).toBe('0.0.0.0');
  });

  it('when a variable is a typo of a setting, then it is refused with the setting it meant, in both modes', () => {
    expect(configProblems({ ALLOWED_ORIGIN: 'https://app.example.com' })).toEqual([
      'ALLOWED_ORIGIN: not a setting; did you mean ALLOWED_ORIGINS?',
    ]);
    expect(configProblems({ ...upstream, UPSTREAM_API_ULR: 'https://api.example.com' })).toEqual([
      'UPSTREAM_API_ULR: not a setting; did you mean UPSTREAM_API_URL?',
    ]);
    const named = { UPSTREAMS: 'plants', UPSTREAM_PLANTS_TOKEN_URL: upstream.UPSTREAM_TOKEN_URL };
    expect(
      configProblems({
        ...named,
        UPSTREAM_PLANTS_CLIENTID: 'broker',
        UPSTREAM_PLANTS_CLIENT_SECRET: 'a-secret-value',
      }),
    ).toContain('UPSTREAM_PLANTS_CLIENTID: not a setting; did you mean UPSTREAM_PLANTS_CLIENT_ID?');
    // The rest of a process's environment is left alone, however short or far from a setting.
    expect(loadConfig({ HOME: '/root', HOSTNAME: 'pod-1', NODE_VERSION: '24', PATH: '/usr/bin' }).port).toBe(
      8080,
    );
  });

  it('when one API key of several is short, then its position is named and no key is shown', () => {
    const keys = ['a'.repeat(32), 'short-key-9', 'b'.repeat(40)];
    const problems = configProblems({ BROKER_API_KEYS: keys.join(',') });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^BROKER_API_KEYS: key 2 of 3 has 11 characters; each key must be at least 32/,
    );
    expect(problems[0]).not.toContain('short-key-9');
  });

  it('when a wildcard origin lacks the dot after *, then it is refused with the pattern it should be', () => {
    expect(configProblems({ ALLOWED_ORIGINS: 'https://*example.com' })).toEqual([
      'ALLOWED_ORIGINS: "https://*example.com" is not a pattern: a wildcard is `*.` followed by a domain, e.g. https://*.example.com',
    ]);
  });

  it('when production has keys and an upstream, then it loads', () => {
    const config = loadConfig({ NODE_ENV: 'production', SIGNING_KEYS: signingKeys, ...upstream });
    expect(config.production).toBe(true);
    expect(config.upstreams[0]?.config).toMatchObject({
      clientId: 'broker',
      profile: 'rfc6749',
      authMethod: 'client_secret_basic',
    });
  });

  it('when a secret comes from NAME_FILE, then the file is read and trimmed', () => {
    const files: Record<string, string> = { '/run/secrets/upstream': 'from-a-file-secret\n' };
    const config = loadConfig(
      {
        ...upstream,
        UPSTREAM_CLIENT_SECRET: undefined,
        UPSTREAM_CLIENT_SECRET_FILE: '/run/secrets/upstream',
      },
      { readFile: (path) => files[path] ?? '' },
    );
    expect(config.upstreams[0]?.config.clientSecret).toBe('from-a-file-secret');
  });

  it('when NAME_FILE cannot be read or is set beside NAME, then that is reported', () => {
    const unreadable = configProblems({
      ...upstream,
      UPSTREAM_CLIENT_SECRET: '',
      UPSTREAM_CLIENT_SECRET_FILE: '/nope',
    });
    expect(unreadable.join('\n')).toMatch(/UPSTREAM_CLIENT_SECRET_FILE: cannot read \/nope/);
    const both = configProblems({ ...upstream, UPSTREAM_CLIENT_SECRET_FILE: '/run/x' });
    expect(both.join('\n')).toMatch(/UPSTREAM_CLIENT_SECRET_FILE: set together with UPSTREAM_CLIENT_SECRET/);
  });

  it('when TRUST_PROXY is a hop count or an address list, then it is parsed; garbage is refused', () => {
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toEqual([
      'loopback',
      '10.0.0.0/8',
    ]);
    expect(configProblems({ TRUST_PROXY: 'everyone' })[0]).toMatch(/^TRUST_PROXY:/);
  });

  it('when allowed origins are given loosely, then they are normalised', () => {
    expect(
      loadConfig({ ALLOWED_ORIGINS: 'HTTPS://App.Example.com:443/, https://*.example.com' }).allowedOrigins,
    ).toEqual(['https://app.example.com', 'https://*.example.com']);
  });
});

describe('.env.example', () => {
  it('when compared with the schema, then it documents exactly its variables and the *_FILE variants', () => {
    const documented = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
      .split('\n')
      .map((line) => /^([A-Z][A-Z0-9_]*)=/.exec(line)?.[1])
      .filter((name): name is string => name !== undefined);
    const expected = [...Object.keys(envSchema.shape), ...secretSettings.map((name) => `${name}_FILE`)];
    expect([...documented].sort()).toEqual([...expected].sort());
  });

  it('when read line by line, then every variable has a comment above it', () => {
    const lines = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8').split('\n');
    lines.forEach((line, index) => {
      if (/^[A-Z]/.test(line)) expect(lines[index - 1], line).toMatch(/^(#|[A-Z])/);
    });
  });

  it('when copied to .env and the UPSTREAMS block of docs/upstreams.md added, then both upstreams load', () => {
    const example = parse(readFileSync(new URL('../../.env.example', import.meta.url), 'utf8'));
    const guide = readFileSync(new URL('../../docs/upstreams.md', import.meta.url), 'utf8');
    const block = /```sh\n(UPSTREAMS=[\s\S]*?)```/.exec(guide)?.[1];
    if (block === undefined) throw new Error('docs/upstreams.md has no UPSTREAMS block');
    const named = parse(
      block.replaceAll(/_CLIENT_SECRET_FILE=\S+/g, '_CLIENT_SECRET=an-upstream-secret-value'),
    );
    const config = loadConfig({ ...example, ...named });
    expect(config.upstreams.map(({ name }) => name)).toEqual(['uitpas', 'entry']);
  });
});
