import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCatalog } from '../../src/errors.js';

describe('error codes', () => {
  const routes = readFileSync(new URL('../../docs/routes.md', import.meta.url), 'utf8');
  const section = routes.slice(routes.indexOf('## Error codes'));
  const rows = new Map(
    [...section.matchAll(/^\| `([a-z_]+)`\s*\| (\d{3})\s*\|/gm)].map((match) => [match[1], Number(match[2])]),
  );

  it('when the docs/routes.md error table is read, then every code is documented with its status', () => {
    for (const [code, { status }] of Object.entries(errorCatalog)) {
      expect(rows.get(code), `${code} in docs/routes.md`).toBe(status);
    }
  });

  it('when the docs/routes.md error table is read, then it documents no code the broker does not have', () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(errorCatalog).sort());
  });
});
