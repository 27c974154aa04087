import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { configProblems } from '../support/expectErrors.js';

const secret = 'an-upstream-secret-value';
const shared = (prefix: string, overrides: Record<string, string> = {}) => ({
  [`${prefix}TOKEN_URL`]: 'https://auth.example.com/oauth/token',
  [`${prefix}CLIENT_ID`]: 'broker',
  [`${prefix}CLIENT_SECRET`]: secret,
  [`${prefix}AUDIENCE`]: 'https://api.example.com',
  ...overrides,
});

describe('named upstreams: configuration', () => {
  it('when UPSTREAMS is unset, then the unprefixed settings are the one upstream "default", unnamed in routes', () => {
    const config = loadConfig(shared('UPSTREAM_'));
    expect(config.namedUpstreams).toBe(false);
    expect(config.upstreams).toHaveLength(1);
    expect(config.upstreams[0]).toMatchObject({
      name: 'default',
      allowedOrigins: undefined,
      config: { clientId: 'broker', audience: 'https://api.example.com' },
    });
  });

  it('when UPSTREAMS names two upstreams, then each is parsed from its own prefix, - read as _', () => {
    const config = loadConfig({
      UPSTREAMS: 'uitpas, entry-api',
      ALLOWED_ORIGINS: 'https://app.example.com,https://events.example.com',
      ...shared('UPSTREAM_UITPAS_', { UPSTREAM_UITPAS_API_URL: 'https://uitpas.example.com' }),
      ...shared('UPSTREAM_ENTRY_API_', {
        UPSTREAM_ENTRY_API_PROFILE: 'json',
        UPSTREAM_ENTRY_API_TOKEN_QUOTA: '1000/day',
        UPSTREAM_ENTRY_API_API_TIMEOUT_MS: '60000',
        UPSTREAM_ENTRY_API_AUDIENCE: 'https://entry.example.com',
        UPSTREAM_ENTRY_API_API_URL: 'https://entry.example.com',
        UPSTREAM_ENTRY_API_ALLOWED_ORIGINS: 'HTTPS://Events.Example.com:443',
      }),
    });
    expect(config.namedUpstreams).toBe(true);
    expect(config.upstreams.map((upstream) => upstream.name)).toEqual(['uitpas', 'entry-api']);
    expect(config.upstreams[0]).toMatchObject({
      allowedOrigins: undefined,
      config: { profile: 'rfc6749', apiUrl: 'https://uitpas.example.com', tokenQuota: undefined },
    });
    expect(config.upstreams[1]).toMatchObject({
      allowedOrigins: ['https://events.example.com'],
      config: {
        profile: 'json',
        audience: 'https://entry.example.com',
        apiUrl: 'https://entry.example.com',
        apiTimeoutMs: 60_000,
        tokenQuota: { limit: 1000, period: 'day' },
      },
    });
  });

  it('when a named secret comes from UPSTREAM_<NAME>_CLIENT_SECRET_FILE, then the file is read', () => {
    const files: Record<string, string> = { '/run/secrets/entry': 'secret-from-a-file\n' };
    const config = loadConfig(
      {
        UPSTREAMS: 'entry',
        ...shared('UPSTREAM_ENTRY_', { UPSTREAM_ENTRY_CLIENT_SECRET: '' }),
        UPSTREAM_ENTRY_CLIENT_SECRET_FILE: '/run/secrets/entry',
      },
      { readFile: (path) => files[path] ?? '' },
    );
    expect(config.upstreams[0]?.config.clientSecret).toBe('secret-from-a-file');
  });

  it('when a named upstream is wrong, then each line names the prefixed variable and never the secret', () => {
    const problems = configProblems({
      UPSTREAMS: 'uitpas,entry',
      ...shared('UPSTREAM_UITPAS_', { UPSTREAM_UITPAS_PROFILE: 'soap', UPSTREAM_UITPAS_TIMEOUT_MS: 'soon' }),
      UPSTREAM_ENTRY_TOKEN_URL: 'not a url',
      UPSTREAM_ENTRY_CLIENT_SECRET: secret,
      UPSTREAM_ENTRY_CLIENT_SECRET_FILE: '/run/secrets/entry',
      UPSTREAM_ENTRY_ALLOWED_ORIGINS: 'ftp://files.example.com',
    });
    const names = problems.map((problem) => problem.split(':')[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        'UPSTREAM_UITPAS_PROFILE',
        'UPSTREAM_UITPAS_TIMEOUT_MS',
        'UPSTREAM_ENTRY_TOKEN_URL',
        'UPSTREAM_ENTRY_CLIENT_SECRET_FILE',
        'UPSTREAM_ENTRY_ALLOWED_ORIGINS',
      ]),
    );
    expect(
      names.filter((name) => !name.startsWith('UPSTREAM_UITPAS_') && !name.startsWith('UPSTREAM_ENTRY_')),
    ).toEqual([]);
    expect(problems.join('\n')).not.toContain(secret);
  });

  it('when a listed upstream misses required settings, then the lines name its prefixed variables', () => {
    const problems = configProblems({
      UPSTREAMS: 'uitpas,entry',
      ...shared('UPSTREAM_UITPAS_', { UPSTREAM_UITPAS_CLIENT_ID: '', UPSTREAM_UITPAS_CLIENT_SECRET: '' }),
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'UPSTREAM_UITPAS_CLIENT_ID: required when an upstream is configured, e.g. UPSTREAM_UITPAS_CLIENT_ID=web-app',
        'UPSTREAM_UITPAS_CLIENT_SECRET: required when an upstream is configured (or UPSTREAM_UITPAS_CLIENT_SECRET_FILE), e.g. UPSTREAM_UITPAS_CLIENT_SECRET=the-secret-your-authorization-server-issued',
        expect.stringMatching(
          /^UPSTREAM_ENTRY_TOKEN_URL: upstream "entry" is listed in UPSTREAMS but not configured/,
        ),
      ]),
    );
  });

  it('when UPSTREAMS is set, then each unprefixed UPSTREAM_* setting is refused, naming the prefixed form', () => {
    const problems = configProblems(
      {
        UPSTREAMS: 'entry',
        ...shared('UPSTREAM_ENTRY_'),
        UPSTREAM_API_URL: 'https://api.example.com',
        UPSTREAM_CLIENT_SECRET_FILE: '/run/secrets/x',
      },
      { readFile: () => 'read-but-unused' },
    );
    expect(problems).toEqual([
      'UPSTREAM_API_URL: not used with UPSTREAMS; set UPSTREAM_<NAME>_API_URL for each upstream instead',
      'UPSTREAM_CLIENT_SECRET_FILE: not used with UPSTREAMS; set UPSTREAM_<NAME>_CLIENT_SECRET_FILE for each upstream instead',
    ]);
  });

  it('when a setting names an unlisted upstream, then it is refused, with or without UPSTREAMS', () => {
    expect(
      configProblems({ ...shared('UPSTREAM_'), UPSTREAM_ENTRY_API_URL: 'https://entry.example.com' }),
    ).toEqual([
      'UPSTREAM_ENTRY_API_URL: names upstream "entry", but UPSTREAMS is not set (list it, e.g. UPSTREAMS=entry,...)',
    ]);
    expect(
      configProblems({ UPSTREAMS: 'uitpas', ...shared('UPSTREAM_UITPAS_'), UPSTREAM_ENTRI_AUDIENCE: 'typo' }),
    ).toEqual(['UPSTREAM_ENTRI_AUDIENCE: names upstream "entri", which UPSTREAMS (uitpas) does not list']);
  });

  it('when a name is malformed, listed twice or reads as another setting, then each is one line', () => {
    const problems = configProblems({
      UPSTREAMS: `Entry,uitpas,uitpas,api,client-assertion,a_b,${'x'.repeat(33)},uitpas-api`,
      ...shared('UPSTREAM_UITPAS_'),
    });
    expect(problems).toEqual([
      'UPSTREAMS: "Entry" is not a name (a-z, 0-9 and -, at most 32 characters), e.g. UPSTREAMS=uitpas,entry',
      'UPSTREAMS: "uitpas" is listed twice',
      'UPSTREAMS: "api" cannot be a name: UPSTREAM_API_TIMEOUT_MS is a setting of its own',
      'UPSTREAMS: "client-assertion" cannot be a name: UPSTREAM_CLIENT_ASSERTION_AUDIENCE is a setting of its own',
      'UPSTREAMS: "a_b" is not a name (a-z, 0-9 and -, at most 32 characters), e.g. UPSTREAMS=uitpas,entry',
      `UPSTREAMS: "${'x'.repeat(33)}" is not a name (a-z, 0-9 and -, at most 32 characters), e.g. UPSTREAMS=uitpas,entry`,
      'UPSTREAMS: "uitpas-api" and "uitpas" cannot both be names: UPSTREAM_UITPAS_API_TIMEOUT_MS would belong to both, e.g. UPSTREAMS=uitpas,entry',
    ]);
  });

  it('when two names get the same token with different token settings, then the second is refused', () => {
    const problems = configProblems({
      UPSTREAMS: 'uitpas,entry',
      ...shared('UPSTREAM_UITPAS_'),
      ...shared('UPSTREAM_ENTRY_', { UPSTREAM_ENTRY_TIMEOUT_MS: '9000' }),
    });
    expect(problems).toEqual([
      'UPSTREAM_ENTRY_TIMEOUT_MS: "entry" gets the same token as "uitpas", so it must equal UPSTREAM_UITPAS_TIMEOUT_MS, e.g. UPSTREAM_ENTRY_TIMEOUT_MS=5000',
    ]);
    // A different scope is a different token: then the settings may differ.
    expect(
      loadConfig({
        UPSTREAMS: 'uitpas,entry',
        ...shared('UPSTREAM_UITPAS_'),
        ...shared('UPSTREAM_ENTRY_', { UPSTREAM_ENTRY_TIMEOUT_MS: '9000', UPSTREAM_ENTRY_SCOPE: 'read' }),
      }).upstreams.map((upstream) => upstream.config.timeoutMs),
    ).toEqual([5000, 9000]);
  });

  it('when UPSTREAMS is set in production, then no dev upstream is implied and each name must be complete', () => {
    const problems = configProblems({ NODE_ENV: 'production', UPSTREAMS: 'entry' });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^UPSTREAM_ENTRY_TOKEN_URL: upstream "entry" is listed/),
      ]),
    );
  });
});
