import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { configParts, envSchema } from '../../src/config/index.js';
import { settingMeta } from '../../src/config/meta.js';
import { renderConfigurationReference } from '../../src/config/reference.js';
import { configProblems } from '../support/expectErrors.js';

const settings = Object.entries(envSchema.shape) as [string, z.ZodType][];

describe('configuration reference', () => {
  it('when rendered from the schema, then it equals the committed docs/configuration.md (run npm run docs:config)', () => {
    const committed = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    expect(committed).toBe(renderConfigurationReference());
  });

  it('when the parts are listed, then together they hold every setting of envSchema exactly once', () => {
    const names = configParts.flatMap((part) => Object.keys(part.schema.shape));
    expect([...names].sort()).toEqual(settings.map(([name]) => name).sort());
  });

  it('when each setting is read, then it has a description and an example its own schema accepts', () => {
    for (const [name, schema] of settings) {
      const meta = settingMeta(schema);
      expect(meta?.description, name).toBeTruthy();
      expect(meta?.example, name).toBeTruthy();
      // Shell substitutions stand for generated values; every literal example must parse.
      if (!meta?.example.includes('$(')) expect(schema.safeParse(meta?.example).success, name).toBe(true);
    }
  });
});

describe('config errors', () => {
  it('when PORT or a URL is malformed, then the problem says what is expected and gives a valid example', () => {
    expect(configProblems({ PORT: 'eighty' })).toEqual([
      'PORT: must be a whole number from 0 to 65535, e.g. PORT=8080',
    ]);
    expect(configProblems({ UPSTREAM_TOKEN_URL: 'auth.example.com/token' })[0]).toBe(
      'UPSTREAM_TOKEN_URL: must be an absolute http(s) URL, e.g. UPSTREAM_TOKEN_URL=https://auth.example.com/oauth/token',
    );
  });

  it('when many settings are wrong or missing, then every problem carries an example and no secret', () => {
    const problems = configProblems({
      NODE_ENV: 'production',
      PORT: '99999',
      CLIENT_TOKEN_BIND_IP: 'sometimes',
      REDIS_URL: 'http://redis',
      RATE_LIMIT_CLAIM: 'lots',
      BROKER_API_KEYS: 'short-secret-1',
      UPSTREAM_CLIENT_SECRET_FILE: '/nonexistent/secret',
    });
    expect(problems.length).toBeGreaterThanOrEqual(6);
    for (const problem of problems) expect(problem).toMatch(/e\.g\. /);
    expect(problems.join('\n')).not.toContain('short-secret-1');
    expect(problems).toContain(
      'CLIENT_TOKEN_BIND_IP: must be one of exact, prefix, off, e.g. CLIENT_TOKEN_BIND_IP=prefix',
    );
  });
});
