import type { IncomingMessage } from 'node:http';
import parseurl from 'parseurl';

/**
 * A request's route as a bounded name, for metric labels and span names: the token routes and the proxy
 * by name, any other route by the pattern Express matched (the app's own strings), `other` when none
 * did. Never the raw path, which a client could vary without end.
 */
export function routeName(req: IncomingMessage & { originalUrl?: string }): string {
  // Matched as the routes are: in any letter case, with or without a trailing slash.
  const path = (parseurl.original(req)?.pathname ?? '').toLowerCase().replace(/(.)\/$/, '$1');
  if (path === '/api/client-token') return 'client-token';
  if (path === '/api/auth/claim') return 'claim';
  if (path === '/api/proxy' || path.startsWith('/api/proxy/')) return 'proxy';
  const pattern = (req as { route?: { path?: unknown } }).route?.path;
  return typeof pattern === 'string' ? pattern : 'other';
}
