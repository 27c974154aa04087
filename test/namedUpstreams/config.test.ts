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

  it('when UPSTREAMS is set, then an unprefixed setting of one API is refused, naming the prefixed form', () => {
    const problems = configProblems({
      UPSTREAMS: 'entry',
      ...shared('UPSTREAM_ENTRY_'),
      UPSTREAM_API_URL: 'https://api.example.com',
      UPSTREAM_ALLOW: 'GET /things',
      UPSTREAM_CALL_QUOTA: '10/day',
    });
    expect(problems).toEqual([
      'UPSTREAM_API_URL: not used with UPSTREAMS (it belongs to one API, so it is never shared); set UPSTREAM_<NAME>_API_URL for each upstream instead',
      'UPSTREAM_ALLOW: not used with UPSTREAMS (it belongs to one API, so it is never shared); set UPSTREAM_<NAME>_ALLOW for each upstream instead',
      'UPSTREAM_CALL_QUOTA: not used with UPSTREAMS (it belongs to one API, so it is never shared); set UPSTREAM_<NAME>_CALL_QUOTA for each upstream instead',
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
      'UPSTREAMS: "api" cannot be a name: UPSTREAM_API_URL is a setting shared by every upstream and would read as one of "api"\'s; rename it (e.g. "my-api")',
      'UPSTREAMS: "client-assertion" cannot be a name: UPSTREAM_CLIENT_ASSERTION_FILE is a setting shared by every upstream and would read as one of "client-assertion"\'s; rename it (e.g. "my-client-assertion")',
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

describe('named upstreams: shared defaults', () => {
  const sharedToken = shared('UPSTREAM_');

  it('when an unprefixed setting is set, then every name without its own takes it, and says where it came from', () => {
    const config = loadConfig({
      UPSTREAMS: 'uitpas,entry',
      ...sharedToken,
      UPSTREAM_PROFILE: 'json',
      UPSTREAM_TIMEOUT_MS: '9000',
      UPSTREAM_UITPAS_API_URL: 'https://uitpas.example.com',
      UPSTREAM_ENTRY_API_URL: 'https://entry.example.com',
      UPSTREAM_ENTRY_AUDIENCE: 'https://entry.example.com',
      UPSTREAM_ENTRY_TIMEOUT_MS: '2000',
    });
    const [uitpas, entry] = config.upstreams;
    expect(uitpas?.config).toMatchObject({
      tokenUrl: 'https://auth.example.com/oauth/token',
      clientId: 'broker',
      clientSecret: secret,
      profile: 'json',
      audience: 'https://api.example.com',
      timeoutMs: 9000,
      apiUrl: 'https://uitpas.example.com',
    });
    expect(entry?.config).toMatchObject({
      clientSecret: secret,
      profile: 'json',
      audience: 'https://entry.example.com',
      timeoutMs: 2000,
      apiUrl: 'https://entry.example.com',
    });
    expect(uitpas?.inherited).toEqual([
      'UPSTREAM_TOKEN_URL',
      'UPSTREAM_CLIENT_ID',
      'UPSTREAM_CLIENT_SECRET',
      'UPSTREAM_PROFILE',
      'UPSTREAM_AUDIENCE',
      'UPSTREAM_TIMEOUT_MS',
    ]);
    expect(entry?.inherited).toEqual([
      'UPSTREAM_TOKEN_URL',
      'UPSTREAM_CLIENT_ID',
      'UPSTREAM_CLIENT_SECRET',
      'UPSTREAM_PROFILE',
    ]);
  });

  it(".env.example's pre-filled defaults load with UPSTREAMS", () => {
    const config = loadConfig({
      UPSTREAMS: 'uitpas',
      ...shared('UPSTREAM_UITPAS_'),
      UPSTREAM_PROFILE: 'rfc6749',
      UPSTREAM_AUTH_METHOD: 'client_secret_basic',
      UPSTREAM_CLIENT_ASSERTION_AUDIENCE: 'token_endpoint',
      UPSTREAM_DEFAULT_TTL: '600',
      UPSTREAM_TIMEOUT_MS: '5000',
      UPSTREAM_API_TIMEOUT_MS: '300000',
    });
    expect(config.upstreams[0]?.config).toMatchObject({ defaultTtlSeconds: 600, apiTimeoutMs: 300_000 });
  });

  it('when a name sets one of a token endpoint or a client credential, then it takes none of the shared ones', () => {
    const files: Record<string, string> = { '/run/secrets/entry': 'entry-secret-from-a-file' };
    const config = loadConfig(
      {
        UPSTREAMS: 'uitpas,entry',
        UPSTREAM_ISSUER: 'https://auth.example.com',
        UPSTREAM_CLIENT_ID: 'broker',
        UPSTREAM_CLIENT_SECRET: secret,
        UPSTREAM_ENTRY_TOKEN_URL: 'https://auth.example.com/entry/token',
        UPSTREAM_ENTRY_CLIENT_SECRET_FILE: '/run/secrets/entry',
      },
      { readFile: (path) => files[path] ?? '' },
    );
    expect(
      config.upstreams.map(({ config: { issuer, tokenUrl, clientSecret } }) => [
        issuer,
        tokenUrl,
        clientSecret,
      ]),
    ).toEqual([
      ['https://auth.example.com', undefined, secret],
      [undefined, 'https://auth.example.com/entry/token', 'entry-secret-from-a-file'],
    ]);
  });

  it('when a name has its own token endpoint but no credential, then the shared secret is refused for it, not sent there', () => {
    expect(
      configProblems({
        UPSTREAMS: 'uitpas,entry',
        ...sharedToken,
        UPSTREAM_ENTRY_TOKEN_URL: 'https://other-idp.example.com/token',
      }),
    ).toEqual([
      'UPSTREAM_ENTRY_CLIENT_SECRET: required, since "entry" has its own UPSTREAM_ENTRY_TOKEN_URL and the shared UPSTREAM_CLIENT_SECRET goes only to the shared token endpoint (UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER), e.g. UPSTREAM_ENTRY_CLIENT_SECRET=the-secret-your-authorization-server-issued',
    ]);
  });

  it('when a name has its own API key, then it takes only the shared timeouts, never the grant', () => {
    const config = loadConfig({
      UPSTREAMS: 'events,plants',
      ...sharedToken,
      UPSTREAM_TIMEOUT_MS: '7000',
      UPSTREAM_EVENTS_API_URL: 'https://events.example.com',
      UPSTREAM_PLANTS_API_URL: 'https://trefle.io/api/v1',
      UPSTREAM_PLANTS_API_KEY: 'a-long-lived-trefle-key',
      UPSTREAM_PLANTS_CREDENTIAL_IN: 'query:token',
    });
    expect(config.upstreams[1]).toMatchObject({
      name: 'plants',
      inherited: ['UPSTREAM_TIMEOUT_MS'],
      config: { apiKey: 'a-long-lived-trefle-key', tokenUrl: undefined, clientSecret: '', timeoutMs: 7000 },
    });
  });

  it('when a shared value is wrong, then one line names the shared variable, never the secret', () => {
    const problems = configProblems(
      {
        UPSTREAMS: 'uitpas,entry',
        ...sharedToken,
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_CLIENT_SECRET_FILE: '/run/secrets/missing',
        UPSTREAM_TIMEOUT_MS: 'soon',
      },
      {
        readFile: () => {
          throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
        },
      },
    );
    expect(problems).toEqual([
      'UPSTREAM_CLIENT_SECRET_FILE: cannot read /run/secrets/missing (ENOENT), e.g. UPSTREAM_CLIENT_SECRET_FILE=/run/secrets/upstream-client-secret',
      'UPSTREAM_TIMEOUT_MS: must be a whole number from 100 to 120000, e.g. UPSTREAM_TIMEOUT_MS=5000',
    ]);
    // Read once for the settings and once for each name, the file is still one line.
    expect(
      configProblems(
        {
          UPSTREAMS: 'uitpas,entry',
          ...sharedToken,
          UPSTREAM_CLIENT_SECRET: '',
          UPSTREAM_CLIENT_SECRET_FILE: '/x',
        },
        { readFile: () => 'REPLACE_ME' },
      ),
    ).toEqual([
      'UPSTREAM_CLIENT_SECRET_FILE: still holds the REPLACE_ME placeholder of the example files; put the real value in',
    ]);
    expect(
      configProblems({
        UPSTREAMS: 'uitpas,entry',
        ...sharedToken,
        UPSTREAM_CLIENT_SECRET: 'REPLACE_ME-secret',
      }),
    ).toEqual([
      'UPSTREAM_CLIENT_SECRET: still holds the REPLACE_ME placeholder of the example files; put the real value in',
    ]);
  });

  it('when two names share a token and one overrides a token setting, then the line names both variables as set', () => {
    expect(
      configProblems({
        UPSTREAMS: 'uitpas,entry',
        ...sharedToken,
        UPSTREAM_TIMEOUT_MS: '9000',
        UPSTREAM_ENTRY_TIMEOUT_MS: '2000',
      }),
    ).toEqual([
      'UPSTREAM_ENTRY_TIMEOUT_MS: "entry" gets the same token as "uitpas", so it must equal UPSTREAM_TIMEOUT_MS, e.g. UPSTREAM_ENTRY_TIMEOUT_MS=5000',
    ]);
  });

  it('when a name would make a shared setting read as its own, then it is refused with a name to use instead', () => {
    const problems = configProblems({ UPSTREAMS: 'default,auth,token,uitpas', ...sharedToken });
    expect(problems).toEqual([
      'UPSTREAMS: "default" cannot be a name: UPSTREAM_DEFAULT_TTL is a setting shared by every upstream and would read as one of "default"\'s; rename it (e.g. "my-default")',
      'UPSTREAMS: "auth" cannot be a name: UPSTREAM_AUTH_METHOD is a setting shared by every upstream and would read as one of "auth"\'s; rename it (e.g. "my-auth")',
      'UPSTREAMS: "token" cannot be a name: UPSTREAM_TOKEN_URL is a setting shared by every upstream and would read as one of "token"\'s; rename it (e.g. "my-token")',
    ]);
    expect(loadConfig({ UPSTREAMS: 'my-default', ...sharedToken }).upstreams[0]?.name).toBe('my-default');
  });

  it('when the shared defaults are written UPSTREAM_DEFAULT_*, then the unprefixed setting is named, in both modes', () => {
    const line =
      'UPSTREAM_DEFAULT_TOKEN_URL: not a setting (no upstream can be named "default"); did you mean UPSTREAM_TOKEN_URL?';
    const value = { UPSTREAM_DEFAULT_TOKEN_URL: 'https://auth.example.com/oauth/token' };
    expect(configProblems({ UPSTREAMS: 'uitpas', ...shared('UPSTREAM_UITPAS_'), ...value })).toEqual([line]);
    expect(configProblems({ ...sharedToken, ...value })).toEqual([line]);
  });

  it('when UPSTREAM_ALLOWED_ORIGINS is set, then ALLOWED_ORIGINS is named, since it has no shared form', () => {
    expect(
      configProblems({
        UPSTREAMS: 'uitpas',
        ...sharedToken,
        UPSTREAM_ALLOWED_ORIGINS: 'https://app.example.com',
      }),
    ).toEqual([
      "UPSTREAM_ALLOWED_ORIGINS: not a setting; did you mean ALLOWED_ORIGINS (every upstream's default)?",
    ]);
  });

  it('when a shared setting is misspelt, then the one meant is named, in both modes', () => {
    const typo = { UPSTREAM_CLIENTID: 'broker', UPSTREAM_CLIENT_ID: '' };
    const meant = 'UPSTREAM_CLIENTID: not a setting; did you mean UPSTREAM_CLIENT_ID?';
    expect(configProblems({ UPSTREAMS: 'uitpas', ...sharedToken, ...typo })).toContain(meant);
    expect(configProblems({ ...sharedToken, ...typo })).toContain(meant);
  });
});
