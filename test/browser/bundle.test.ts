import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import * as source from '../../src/browser/client.js';
import { clientDir } from '../../src/http/app.js';

/**
 * About 20 % above the 3.2 KiB measured when the helper was first built from TypeScript (3,840 bytes),
 * raised by 150 when websocket() joined the pow solver's loader (together 3,977 bytes), and by 60 for
 * `traceContext` (4,039 bytes).
 */
const GZIP_BUDGET_BYTES = 4050;
/**
 * 8 KiB until websocket() and the pow solver's loader came together (8,791 bytes minified); 8,917 with
 * `traceContext`.
 */
const MINIFIED_BUDGET_BYTES = 8930;

const code = readFileSync(join(clientDir, 'client.js'));
const declarations = readFileSync(join(clientDir, 'client.d.ts'), 'utf8');
const exportedNames = Object.keys(source).sort();

describe('the built browser helper (dist/browser/, served at /client.js)', () => {
  it('when loaded, then it exports what src/browser/client.ts exports, each of the same kind', async () => {
    const built: Record<string, unknown> = await import(join(clientDir, 'client.js'));
    expect(Object.keys(built).sort()).toEqual(exportedNames);
    expect(exportedNames).toEqual([
      'BrokerClientError',
      'createBrokerClient',
      'createDpopSigner',
      'defaultRefreshMargin',
    ]);
    for (const name of exportedNames) expect(typeof built[name], name).toBe('function');
    // Minified, but the class keeps its name.
    expect((built.BrokerClientError as typeof source.BrokerClientError).name).toBe('BrokerClientError');
  });

  it('when used with a fetch, then it gets a token, calls the proxy with it and renews it once after a refusal', async () => {
    const built = (await import(join(clientDir, 'client.js'))) as typeof source;
    const sent: { url: string; authorization: string | null }[] = [];
    let minted = 0;
    const client = built.createBrokerClient({
      baseUrl: 'https://broker.test/',
      autoRefresh: false,
      fetch: async (url, init) => {
        sent.push({ url, authorization: new Headers(init.headers).get('authorization') });
        if (url.endsWith('/api/client-token')) {
          minted += 1;
          return Response.json({ token: `token-${minted}`, tokenType: 'Bearer', expiresIn: 60 });
        }
        if (minted === 1) {
          return new Response(JSON.stringify({ code: 'invalid_client_token' }), {
            status: 401,
            headers: { 'content-type': 'application/problem+json' },
          });
        }
        return Response.json({ ok: true });
      },
    });
    expect((await client.fetch('/things?page=2')).status).toBe(200);
    expect(sent).toEqual([
      { url: 'https://broker.test/api/client-token', authorization: null },
      { url: 'https://broker.test/api/proxy/things?page=2', authorization: 'Bearer token-1' },
      { url: 'https://broker.test/api/client-token', authorization: null },
      { url: 'https://broker.test/api/proxy/things?page=2', authorization: 'Bearer token-2' },
    ]);
    expect(client.tokenInfo()).toMatchObject({ token: 'token-2', tokenType: 'Bearer', expiresIn: 60 });
  });

  it('when read, then it is one module that imports nothing (dependency-free) but its own pow solver, on demand', () => {
    const text = code.toString('utf8');
    // The proof-of-work solver is a chunk of its own, served beside client.js and loaded only for a `pow` proof.
    const solverImport = /\bimport\(new URL\("\.\/pow\.js",import\.meta\.url\)\.href\)/g;
    expect(text.match(solverImport)).toHaveLength(1);
    expect(text.replace(solverImport, '')).not.toMatch(
      /\bimport\s*[{*"'(]|\bimport\s+\w+\s+from\b|\brequire\s*\(/,
    );
  });

  it('when gzipped, then it stays within the size budget', () => {
    const gzipped = gzipSync(code, { level: 9 }).length;
    expect(gzipped).toBeLessThan(GZIP_BUDGET_BYTES);
    // The build serves the minified file: far smaller than the sources' own text.
    expect(code.length).toBeLessThan(MINIFIED_BUDGET_BYTES);
  });

  it('when its declarations are read, then they are one file declaring every export, importing nothing', () => {
    expect(declarations).not.toMatch(/^\s*import\b|from\s+['"]/m);
    for (const name of ['createBrokerClient', 'createDpopSigner', 'defaultRefreshMargin']) {
      expect(declarations).toContain(`export declare function ${name}(`);
    }
    expect(declarations).toContain('export declare class BrokerClientError extends Error');
    for (const type of ['BrokerClient', 'BrokerClientOptions', 'DpopSigner', 'TokenInfo']) {
      expect(declarations).toContain(`export interface ${type} {`);
    }
    for (const type of ['BrokerClientEvent', 'BrokerErrorCode', 'ClientErrorCode', 'TokenReason']) {
      expect(declarations).toContain(`export type ${type} =`);
    }
  });
});
