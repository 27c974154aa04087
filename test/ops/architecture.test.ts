import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const map = readFileSync(new URL('docs/architecture.md', root), 'utf8');

describe('docs/architecture.md', () => {
  it('when every src/ path it names is looked up, then each exists', () => {
    const paths = [...map.matchAll(/`(src\/[^`\s]*)`/g)].map((match) => match[1] ?? '');
    expect(paths.length).toBeGreaterThan(30);
    expect(paths.filter((path) => !existsSync(new URL(path, root)))).toEqual([]);
  });

  it('when every test/ path it names is looked up, then each exists', () => {
    const paths = [...map.matchAll(/`(test\/[^`\s]*)`/g)].map((match) => match[1] ?? '');
    expect(paths.filter((path) => !existsSync(new URL(path, root)))).toEqual([]);
  });

  it('when the folders of src/ are listed, then the table describes each of them', () => {
    const folders = readdirSync(new URL('src/', root), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => `src/${entry.name}/`);
    const nested = ['src/http/dispatch/', 'src/http/middleware/', 'src/http/routes/'];
    expect([...folders, ...nested].filter((folder) => !map.includes(`| \`${folder}\` |`))).toEqual([]);
  });

  it('when the README is read, then it links to the map', () => {
    expect(readFileSync(new URL('README.md', root), 'utf8')).toContain('(docs/architecture.md)');
  });
});
