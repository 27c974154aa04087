import { describe, expect, it } from 'vitest';
import type { UpstreamConfig } from '../../src/config/index.js';
import { tokenIdentity } from '../../src/upstream/cacheKey.js';
import { upstreamConfigFor } from '../support/oauthServers.js';

const base: UpstreamConfig = upstreamConfigFor('https://auth.example.com/oauth/token', {
  clientId: 'broker',
  clientSecret: 'secret-one',
  audience: 'https://api.example.com',
  scope: 'read write',
  resource: 'https://api.example.com/',
});

describe('tokenIdentity: one cache per distinct token request', () => {
  it('when only the API, name-level settings or the scope order differ, then the identity is the same', () => {
    const other: UpstreamConfig = { ...base, apiUrl: 'https://other.example.com', scope: 'write  read read' };
    expect(tokenIdentity(other)).toBe(tokenIdentity(base));
  });

  it.each<[string, Partial<UpstreamConfig>]>([
    ['scope', { scope: 'read' }],
    ['audience', { audience: 'https://other.example.com' }],
    ['resource', { resource: 'https://other.example.com/' }],
    ['client id', { clientId: 'other' }],
    ['client secret', { clientSecret: 'secret-two' }],
    ['auth method', { authMethod: 'client_secret_post' }],
    ['profile', { profile: 'json' }],
    ['token endpoint', { tokenUrl: 'https://auth.example.com/other/token' }],
    ['issuer instead of token URL', { tokenUrl: undefined, issuer: 'https://auth.example.com' }],
  ])('when only the %s differs, then the identity differs', (_what, change) => {
    expect(tokenIdentity({ ...base, ...change })).not.toBe(tokenIdentity(base));
  });

  it('when read, then it reveals neither the secret nor the client', () => {
    const identity = tokenIdentity(base);
    expect(identity).toMatch(/^upstream-token:[0-9a-f]{32}$/);
  });
});
