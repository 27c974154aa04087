import { describe, expect, it } from 'vitest';
import { checkConfigCommand } from '../../src/cli/checkConfig.js';
import { loadConfig } from '../../src/config/index.js';
import {
  parseCredentialPlacement,
  queryWithCredential,
  withoutQueryCredential,
} from '../../src/proxy/credentialPlacement.js';
import { configProblems } from '../support/expectErrors.js';

const apiKey = 'a-static-api-key-for-config-tests';

describe('UPSTREAM_CREDENTIAL_IN', () => {
  it.each([
    ['authorization', { in: 'authorization' }],
    ['header:X-Api-Key', { in: 'header', name: 'x-api-key' }],
    ['header:Authorization', { in: 'authorization' }],
    ['query:token', { in: 'query', param: 'token' }],
    ['query:key', { in: 'query', param: 'key' }],
  ])('when it is %j, then the credential goes to %j', (value, placement) => {
    expect(parseCredentialPlacement(value)).toEqual(placement);
  });

  it.each([
    'bearer',
    'header:',
    'header:bad name',
    'header:cookie',
    'header:X-Forwarded-For',
    'query:',
    'query:to ken',
    'query:a&b',
    'cookie:session',
  ])('when it is %j, then it is refused with what to write instead', (value) => {
    expect(parseCredentialPlacement(value)).toEqual(expect.any(String));
  });

  it('when the client sent the parameter, in any spelling, then only the broker credential remains, after the rest', () => {
    expect(queryWithCredential('a=1&token=x&%74oken=y&b=2&token', 'token', 'k/1+')).toBe(
      'a=1&b=2&token=k%2F1%2B',
    );
    expect(queryWithCredential(undefined, 'key', 'k')).toBe('key=k');
  });

  it('when a URL the API sent back holds the credential, then it is removed, or the URL dropped when it appears elsewhere', () => {
    expect(withoutQueryCredential('/p?token=sekrit&x=1#f', 'token', 'sekrit')).toBe('/p?x=1#f');
    expect(withoutQueryCredential('/p?token=sekrit', 'token', 'sekrit')).toBe('/p');
    expect(withoutQueryCredential('/p?copy=sekrit', 'token', 'sekrit')).toBeUndefined();
    expect(withoutQueryCredential('/sekrit/p', 'token', 'sekrit')).toBeUndefined();
    expect(withoutQueryCredential('/p?x=1', 'token', 'sekrit')).toBe('/p?x=1');
  });
});

describe('UPSTREAM_API_KEY', () => {
  it('when an API key and an API URL are set, then the upstream has no grant and takes the key', () => {
    const config = loadConfig({
      UPSTREAM_API_KEY: apiKey,
      UPSTREAM_API_URL: 'https://trefle.io/api/v1',
      UPSTREAM_CREDENTIAL_IN: 'query:token',
    });
    expect(config.upstreams[0]?.config).toMatchObject({
      apiKey,
      tokenUrl: undefined,
      issuer: undefined,
      credentialIn: { in: 'query', param: 'token' },
    });
  });

  it('when an API key comes with grant settings or without an API URL, then each is a problem that names it', () => {
    expect(
      configProblems({
        UPSTREAM_API_KEY: apiKey,
        UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
        UPSTREAM_CLIENT_ID: 'broker',
      }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^UPSTREAM_TOKEN_URL: not used with UPSTREAM_API_KEY/),
        expect.stringMatching(/^UPSTREAM_CLIENT_ID: not used with UPSTREAM_API_KEY/),
        expect.stringMatching(/^UPSTREAM_API_URL: required with UPSTREAM_API_KEY/),
      ]),
    );
  });

  it('when named upstreams mix a key and a grant, then each is configured its own way and the key is named by its prefix', () => {
    const config = loadConfig({
      UPSTREAMS: 'plants,events',
      UPSTREAM_PLANTS_API_KEY: apiKey,
      UPSTREAM_PLANTS_API_URL: 'https://trefle.io/api/v1',
      UPSTREAM_EVENTS_TOKEN_URL: 'https://auth.example.com/oauth/token',
      UPSTREAM_EVENTS_CLIENT_ID: 'broker',
      UPSTREAM_EVENTS_CLIENT_SECRET: 'an-upstream-secret-value',
    });
    expect(
      config.upstreams.map(({ name, config: upstream }) => [name, upstream.apiKey !== undefined]),
    ).toEqual([
      ['plants', true],
      ['events', false],
    ]);
    expect(configProblems({ UPSTREAMS: 'plants', UPSTREAM_PLANTS_API_KEY: apiKey })).toEqual([
      expect.stringMatching(/^UPSTREAM_PLANTS_API_URL: required with UPSTREAM_PLANTS_API_KEY/),
    ]);
  });

  it('when check-config describes a static-key upstream, then it says so and where the key goes, never the key', async () => {
    let stdout = '';
    const code = await checkConfigCommand.run([], {
      env: {
        UPSTREAM_API_KEY: apiKey,
        UPSTREAM_API_URL: 'https://trefle.io/api/v1',
        UPSTREAM_CREDENTIAL_IN: 'query:token',
      },
      cwd: '/nonexistent-token-broker-dir',
      stdout: (text) => {
        stdout += text;
      },
      stderr: () => {},
      readStdin: async () => '',
      secrets: new Set(),
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(/upstream:\s+static API key \(no grant\)\n/);
    expect(stdout).toMatch(/credential in:\s+query parameter token\n/);
    expect(stdout).toMatch(/allow:\s+unset: opens every method and path\n/);
    expect(stdout).not.toContain(apiKey);
  });
});
