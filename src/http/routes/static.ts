import { join } from 'node:path';
import type { RequestHandler } from 'express';

/** By file name ending; `send` would guess `.d.ts` to be `video/mp2t` (an MPEG transport stream). */
const contentTypes: ReadonlyArray<readonly [string, string]> = [
  ['.d.ts', 'text/plain; charset=utf-8'],
  ['.js', 'text/javascript; charset=utf-8'],
  ['.html', 'text/html; charset=utf-8'],
  ['.css', 'text/css; charset=utf-8'],
  ['.svg', 'image/svg+xml'],
];

/**
 * The browser helper (`/client.js`, typed by `/client.d.ts`, and its proof-of-work solver `/pow.js` and
 * `/pow-worker.js`, all built from `src/browser/` into `clientDir`) is served always and to any origin: pages on other origins import it as a module
 * script, which is a CORS request. The demo page from `publicDir` is served only with the dev upstream.
 */
export function staticFiles({
  publicDir,
  clientDir,
  demo,
}: {
  publicDir: string;
  clientDir: string;
  demo: boolean;
}): { path: string; handler: RequestHandler }[] {
  const files: Record<string, string> = {
    '/client.js': join(clientDir, 'client.js'),
    '/client.d.ts': join(clientDir, 'client.d.ts'),
    // The proof-of-work solver, loaded by client.js only when the broker asks for a `pow` proof.
    '/pow.js': join(clientDir, 'pow.js'),
    '/pow-worker.js': join(clientDir, 'pow-worker.js'),
  };
  if (demo) {
    for (const file of ['index.html', 'demo.js', 'demo.css', 'favicon.svg']) {
      files[file === 'index.html' ? '/' : `/${file}`] = join(publicDir, file);
    }
  }
  return Object.entries(files).map(([route, path]) => {
    const type = contentTypes.find(([ending]) => path.endsWith(ending))?.[1];
    const handler: RequestHandler = (_req, res, next) => {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
      res.setHeader('Cache-Control', 'no-cache');
      if (type) res.setHeader('Content-Type', type);
      // The demo page's proxy calls are same-origin GETs, which carry no `Origin` (Fetch standard), so the
      // proxy reads the page's origin from `Referer`; helmet's default `no-referrer` would remove it.
      if (route === '/') res.setHeader('Referrer-Policy', 'same-origin');
      res.sendFile(path, { dotfiles: 'deny' }, (error) => {
        if (error) next(error);
      });
    };
    return { path: route, handler };
  });
}
