import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientDir, publicDir } from '../../src/http/app.js';
import { type OidcBroker, startBroker } from '../support/broker.js';

/** The route of each file the broker serves, and the content type it must carry. */
const served = [
  { route: '/client.js', file: join(clientDir, 'client.js'), type: 'text/javascript; charset=utf-8' },
  { route: '/client.d.ts', file: join(clientDir, 'client.d.ts'), type: 'text/plain; charset=utf-8' },
  { route: '/', file: join(publicDir, 'index.html'), type: 'text/html; charset=utf-8' },
  { route: '/demo.js', file: join(publicDir, 'demo.js'), type: 'text/javascript; charset=utf-8' },
  { route: '/demo.css', file: join(publicDir, 'demo.css'), type: 'text/css; charset=utf-8' },
  { route: '/favicon.svg', file: join(publicDir, 'favicon.svg'), type: 'image/svg+xml' },
];

describe('the files the broker serves (demo page on)', () => {
  let broker: OidcBroker;

  beforeAll(async () => {
    broker = await startBroker({ demo: true });
  });

  afterAll(async () => {
    await broker?.close();
  });

  it.each(served)(
    'when $route is fetched, then it is the file as built, served as $type',
    async ({ route, file, type }) => {
      const answer = await fetch(`${broker.url}${route}`);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe(type);
      expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
      expect(Buffer.from(await answer.arrayBuffer()).equals(readFileSync(file))).toBe(true);
    },
  );

  it('when public/ is listed, then every file in it is served by one of those routes', () => {
    const files = served.map(({ file }) => file);
    expect(readdirSync(publicDir).filter((name) => !files.includes(join(publicDir, name)))).toEqual([]);
  });
});
