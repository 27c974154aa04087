import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { envSchema, secretSettings } from '../../src/config.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The body of a `## title` section, up to the next `## ` heading. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  expect(start, `README has a "## ${title}" section`).toBeGreaterThanOrEqual(0);
  const rest = readme.slice(start + title.length + 5);
  const end = rest.search(/^## /m);
  return end === -1 ? rest : rest.slice(0, end);
}

/** Every `NAME` in the first column of the configuration table (a cell may name several: `A` / `B`). */
function tableVariables(): string[] {
  const rows = section('Configuration')
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|\s*-/.test(line));
  return rows
    .slice(1)
    .flatMap((row) =>
      [...(row.split('|')[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((match) => match[1] ?? ''),
    );
}

describe('README', () => {
  it('when the configuration table is read, then it names every variable of envSchema and no other', () => {
    const documented = tableVariables();
    const schema = Object.keys(envSchema.shape);
    expect(schema.filter((name) => !documented.includes(name))).toEqual([]);
    expect(documented.filter((name) => !schema.includes(name))).toEqual([]);
  });

  it('when the configuration section is read, then every secret setting mentions its _FILE variant', () => {
    const text = section('Configuration');
    expect(secretSettings.filter((name) => !text.includes(`${name}_FILE`))).toEqual([]);
  });

  it('when the operations section is read, then it lists every broker metric the registry exposes', async () => {
    const { createMetrics } = await import('../../src/metrics.js');
    const metrics = createMetrics({ clock: { now: () => 0 } });
    const names = (await metrics.registry.getMetricsAsJSON())
      .map((metric) => metric.name)
      .filter((name) => name.startsWith('token_broker_'));
    expect(names.length).toBeGreaterThanOrEqual(8);
    const text = section('Operations');
    for (const name of names) expect(text, name).toContain(`\`${name}\``);
  });

  it('when the diagrams are read, then the browser and sidecar flows are mermaid sequence diagrams', () => {
    const diagrams = [...readme.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
    expect(diagrams.length).toBeGreaterThanOrEqual(2);
    for (const diagram of diagrams) expect(diagram.trimStart()).toMatch(/^sequenceDiagram\n/);
    expect(diagrams.some((d) => d.includes('/api/client-token') && d.includes('/api/proxy/'))).toBe(true);
    expect(diagrams.some((d) => d.includes('/api/upstream-token') && d.includes('/api/auth/claim'))).toBe(
      true,
    );
  });
});
