import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CacheKeyInput,
  cacheKey,
  normalizeScope,
  secretFingerprint,
} from '../../src/upstream/cacheKey.js';

const base: CacheKeyInput = {
  tokenEndpoint: 'https://as.example.com/oauth/token',
  clientId: 'broker-client',
  authMethod: 'client_secret_basic',
  profile: 'rfc6749',
  scope: 'read write',
  audience: 'https://api.example.com',
  resource: undefined,
  secret: 'a-client-secret-that-is-long-enough',
};

describe('cache key', () => {
  it('when the inputs are the same, then the key is the same', () => {
    expect(cacheKey({ ...base })).toBe(cacheKey({ ...base }));
  });

  it('when only the order, spacing or repetition of scopes differs, then the key is the same', () => {
    expect(cacheKey({ ...base, scope: '  write read read ' })).toBe(cacheKey(base));
    expect(normalizeScope('b a  b')).toBe('a b');
    expect(normalizeScope(undefined)).toBe('');
  });

  it('when any input changes, the secret included, then the key changes', () => {
    const variants: Partial<CacheKeyInput>[] = [
      { tokenEndpoint: 'https://as.example.com/other' },
      { clientId: 'other-client' },
      { authMethod: 'client_secret_post' },
      { profile: 'json' },
      { scope: 'read' },
      { scope: undefined },
      { audience: 'https://other.example.com' },
      { audience: undefined },
      { resource: 'https://api.example.com' },
      { secret: 'a-client-secret-that-is-long-enougH' },
    ];
    const keys = new Set([cacheKey(base), ...variants.map((variant) => cacheKey({ ...base, ...variant }))]);
    expect(keys.size).toBe(variants.length + 1);
  });

  it('when fields are shifted between neighbours, then the key still changes (no ambiguous concatenation)', () => {
    expect(cacheKey({ ...base, clientId: 'a', authMethod: 'bc' })).not.toBe(
      cacheKey({ ...base, clientId: 'ab', authMethod: 'c' }),
    );
  });

  it('when a key is made, then it holds neither the secret, its fingerprint nor the client id', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 8 }), fc.string({ minLength: 4 }), (secret, clientId) => {
        const key = cacheKey({ ...base, secret, clientId });
        expect(key).toMatch(/^upstream-token:[0-9a-f]{32}$/);
        expect(key.includes(secret)).toBe(false);
        expect(key.includes(secretFingerprint(secret))).toBe(false);
      }),
    );
  });

  it('when a secret is fingerprinted, then the result is 16 hex digits that differ from a plain SHA-256 prefix', async () => {
    const { createHash } = await import('node:crypto');
    const fingerprint = secretFingerprint(base.secret);
    expect(fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(createHash('sha256').update(base.secret).digest('hex').startsWith(fingerprint)).toBe(false);
  });
});
