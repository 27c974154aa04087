import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { Config } from '../../src/config/index.js';
import { createConfigReloader, fileSettings } from '../../src/config/reloader.js';
import { createLogger } from '../../src/telemetry/logger.js';

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

  it('when a shared secret file of named upstreams changes, then the reload gives each name that takes it the new secret', async () => {
    const files: Record<string, string> = {
      '/s/shared-secret': 'shared-secret-first',
      '/s/plants-secret': 'plants-secret-own',
    };
    const env = {
      UPSTREAMS: 'uitpas,entry,plants',
      UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_CLIENT_SECRET_FILE: '/s/shared-secret',
      UPSTREAM_PLANTS_CLIENT_SECRET_FILE: '/s/plants-secret',
    };
    expect([...fileSettings(env).keys()]).toEqual([
      'UPSTREAM_CLIENT_SECRET_FILE',
      'UPSTREAM_PLANTS_CLIENT_SECRET_FILE',
    ]);
    const applied: Config[] = [];
    const reloader = createConfigReloader({
      env,
      logger: createLogger({ level: 'silent', name: 'test' }),
      clock: systemClock,
      apply: (next) => {
        applied.push(next);
      },
      readFile: (path) => files[path] ?? '',
      watchFiles: false,
    });
    files['/s/shared-secret'] = 'shared-secret-second';
    expect((await reloader.reload('test')).outcome).toBe('applied');
    reloader.close();
    expect(applied[0]?.upstreams.map(({ name, config }) => [name, config.clientSecret])).toEqual([
      ['uitpas', 'shared-secret-second'],
      ['entry', 'shared-secret-second'],
      ['plants', 'plants-secret-own'],
    ]);
  });
});
