import { extname, join } from 'node:path';
import { Router } from 'express';

/**
 * The browser helper (`/client.js`, typed by `/client.d.ts`) is served always and to any origin: pages
 * on other origins import it as a module script, which is a CORS request. The demo page is served only
 * with the dev upstream.
 */
/**
 * Each file's type, said outright: `send` guesses from the extension, and `.ts` is MPEG transport stream
 * (`video/mp2t`) to it.
 */
const contentTypes: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export function staticRoutes({ publicDir, demo }: { publicDir: string; demo: boolean }): Router {
  const router = Router();
  const files: Record<string, string> = { '/client.js': 'client.js', '/client.d.ts': 'client.d.ts' };
  if (demo) {
    Object.assign(files, {
      '/': 'index.html',
      '/demo.js': 'demo.js',
      '/demo.css': 'demo.css',
      '/favicon.svg': 'favicon.svg',
    });
  }
  for (const [route, file] of Object.entries(files)) {
    router.get(route, (_req, res, next) => {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
      res.setHeader('Cache-Control', 'no-cache');
      // The demo page's proxy calls are same-origin GETs, which carry no `Origin` (Fetch standard), so the
      // proxy reads the page's origin from `Referer`; helmet's default `no-referrer` would remove it.
      if (file === 'index.html') res.setHeader('Referrer-Policy', 'same-origin');
      const type = contentTypes[extname(file)];
      if (type) res.setHeader('Content-Type', type);
      res.sendFile(join(publicDir, file), { dotfiles: 'deny' }, (error) => {
        if (error) next(error);
      });
    });
  }
  return router;
}
