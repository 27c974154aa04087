import express from 'express';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { expectNoSecrets } from '../support/logs.js';
import { sendAndCheck, useFuzzTarget } from './requests.js';

/**
 * Counterexamples the fuzzers and the edge-case suites found, kept as plain tests so they stay fixed
 * whatever seed a later run draws.
 */

const target = useFuzzTarget();

describe('regressions found by fuzzing', () => {
  it('when OPTIONS reaches a backend route with a client token (claim fuzzer, shrunk), then Express answers Allow and nothing else', async () => {
    for (const path of ['/api/auth/claim', '/api/upstream-token']) {
      const answer = await sendAndCheck(target.broker, {
        method: 'OPTIONS',
        path: `${path}?`,
        headers: {
          origin: 'https://app.example.com',
          authorization: `bearer   ${target.clientToken}  `,
          'x-request-id': 'a'.repeat(129),
          'x-forwarded-for': '::0',
        },
        body: '{}',
      });
      expect(answer.status).toBe(200);
      expect(answer.headers.allow).toBeDefined();
      expect(answer.body).not.toMatch(/token|eyJ/);
      expectNoSecrets(answer.body, [...target.broker.secrets(), target.clientToken]);
    }
  });

  it.each(['https://*.example.org', 'https://$.example.org', 'https://a!.example.org'])(
    'when Origin is %s under an https://*.example.org pattern (binding suite), then it is not a subdomain and gets no token',
    async (origin) => {
      const answer = await sendAndCheck(target.broker, {
        method: 'GET',
        path: '/api/client-token',
        headers: { origin },
      });
      expect(answer.status).toBe(403);
      expect(JSON.parse(answer.body).code).toBe('origin_not_allowed');
    },
  );

  it.each(['10.0.0.0/0', '10.0.0.0/33', '::/0', '2001:db8::/200'])(
    'when TRUST_PROXY is %s, then loadConfig names the variable instead of Express throwing at start-up',
    (entry) => {
      expect(() => loadConfig({ TRUST_PROXY: entry })).toThrow(ConfigError);
    },
  );

  it('when a TRUST_PROXY list passes loadConfig, then Express compiles it; the refused entries would have thrown there', () => {
    const { trustProxy } = loadConfig({
      TRUST_PROXY: 'loopback, ::ffff:10.0.0.0/104, fe80::1%eth0, 2001:db8::/32',
    });
    expect(() => express().set('trust proxy', trustProxy)).not.toThrow();
    expect(() => express().set('trust proxy', ['10.0.0.0/0'])).toThrow(/invalid range/);
  });
});
