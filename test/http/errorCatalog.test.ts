import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCatalog } from '../../src/errors.js';

describe('error codes', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Error codes'));
  const rows = new Map(
    [...section.matchAll(/^\| `([a-z_]+)`\s*\| (\d{3})\s*\|/gm)].map((match) => [match[1], Number(match[2])]),
  );

  it('when the README error table is read, then every code is documented with its status', () => {
    for (const [code, { status }] of Object.entries(errorCatalog)) {
      expect(rows.get(code), `${code} in README`).toBe(status);
    }
  });

  it('when the README error table is read, then it documents no code the broker does not have', () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(errorCatalog).sort());
  });
});
