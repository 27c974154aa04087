import { describe, expect, it } from 'vitest';
import { fileSettings } from '../../src/config/reloader.js';

describe('the files a reload re-reads', () => {
  it('when the environment names files, then every *_FILE setting of the configuration is watched, named upstreams included, and no other', () => {
    const watched = fileSettings({
      SIGNING_KEYS_FILE: '/s/signing-keys',
      BROKER_API_KEYS_FILE: '/s/api-keys',
      UPSTREAM_ENTRY_CLIENT_SECRET_FILE: '/s/entry-secret',
      UPSTREAM_CLIENT_ASSERTION_FILE: '/t/token',
      UPSTREAM_ENTRY_TLS_CERT_FILE: '/tls/tls.crt',
      UPSTREAM_ENTRY_TLS_KEY_FILE: '/tls/tls.key',
      UPSTREAM_ENTRY_TLS_CA_FILE: '/tls/ca.crt',
      REDIS_PASSWORD_FILE: '/r/password',
      REDIS_TLS_CA_FILE: '/r/ca.pem',
      KUBECONFIG_FILE: '/home/me/.kube/config',
      CACHE_ENCRYPTION_KEY_FILE: '',
    });
    expect([...watched.keys()].sort()).toEqual([
      'BROKER_API_KEYS_FILE',
      'REDIS_PASSWORD_FILE',
      'REDIS_TLS_CA_FILE',
      'SIGNING_KEYS_FILE',
      'UPSTREAM_CLIENT_ASSERTION_FILE',
      'UPSTREAM_ENTRY_CLIENT_SECRET_FILE',
      'UPSTREAM_ENTRY_TLS_CA_FILE',
      'UPSTREAM_ENTRY_TLS_CERT_FILE',
      'UPSTREAM_ENTRY_TLS_KEY_FILE',
    ]);
  });
});
