import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { secretSettings } from '../../src/config/index.js';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const readme = read('README.md');
const docs = readdirSync(new URL('docs/', root)).filter((name) => name.endsWith('.md'));

/** The body of a `## title` section of `text`, up to the next `## ` heading. */
function section(text: string, title: string): string {
  const start = text.indexOf(`\n## ${title}\n`);
  expect(start, `a "## ${title}" section`).toBeGreaterThanOrEqual(0);
  const rest = text.slice(start + title.length + 5);
  const end = rest.search(/^## /m);
  return end === -1 ? rest : rest.slice(0, end);
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replaceAll(' ', '-');

describe('README', () => {
  it('when measured, then it is a front door of at most about 200 lines', () => {
    expect(readme.split('\n').length).toBeLessThanOrEqual(200);
  });

  it('when its shell blocks are read in order, then every variable they use is set before', () => {
    const shell = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1] ?? '').join('\n');
    const set = new Set<string>();
    for (const line of shell.split('\n')) {
      for (const [, name] of line.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
        expect(set.has(name ?? ''), `$${name} used before it is set: ${line}`).toBe(true);
      }
      for (const [, name] of line.matchAll(/(?:^|\s|export\s+)([A-Z_][A-Z0-9_]*)=/g)) set.add(name ?? '');
    }
    expect(set).toContain('KEY');
    expect(set).toContain('CLIENT_TOKEN');
  });

  it('when its examples send an API key, then it goes in a header, never in the query string', () => {
    expect(readme).not.toMatch(/[?&](token|api_key|key)=/);
    expect(readme).toContain('-H "Authorization: Bearer $KEY"');
  });
});

describe('README and docs/', () => {
  it('when every relative link is followed, then its file (and heading) exists', () => {
    const files = [['README.md', readme], ...docs.map((name) => [`docs/${name}`, read(`docs/${name}`)])];
    for (const [path, text] of files) {
      for (const [, target] of (text ?? '').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (!target || /^[a-z]+:/.test(target)) continue;
        const [file, hash] = target.split('#');
        const resolved = file ? new URL(file, new URL(path ?? '', root)) : new URL(path ?? '', root);
        expect(existsSync(resolved), `${path} links to ${target}`).toBe(true);
        if (hash && resolved.pathname.endsWith('.md')) {
          const headings = [...readFileSync(resolved, 'utf8').matchAll(/^#+ (.*)$/gm)].map((m) =>
            anchor(m[1] ?? ''),
          );
          expect(headings, `${path} links to ${target}`).toContain(hash);
        }
      }
    }
  });

  it('when the configuration reference is read, then every secret setting mentions its _FILE variant', () => {
    const text = read('docs/configuration.md');
    expect(secretSettings.filter((name) => !text.includes(`${name}_FILE`))).toEqual([]);
  });

  it('when the operations page is read, then it lists every broker metric the registry exposes', async () => {
    const { createMetrics } = await import('../../src/telemetry/metrics.js');
    const metrics = createMetrics({ clock: { now: () => 0 } });
    const names = (await metrics.registry.getMetricsAsJSON())
      .map((metric) => metric.name)
      .filter((name) => name.startsWith('token_broker_'));
    expect(names.length).toBeGreaterThanOrEqual(8);
    const text = read('docs/operations.md');
    for (const name of names) expect(text, name).toContain(`\`${name}\``);
  });

  it('when the diagrams are read, then the browser and sidecar flows are mermaid sequence diagrams', () => {
    const text = section(read('docs/routes.md'), 'How it fits together');
    const diagrams = [...text.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
    expect(diagrams.length).toBeGreaterThanOrEqual(2);
    for (const diagram of diagrams) expect(diagram.trimStart()).toMatch(/^sequenceDiagram\n/);
    expect(diagrams.some((d) => d.includes('/api/client-token') && d.includes('/api/proxy/'))).toBe(true);
    expect(diagrams.some((d) => d.includes('/api/upstream-token') && d.includes('/api/auth/claim'))).toBe(
      true,
    );
  });
});
