import cors from 'cors';
import vary from 'vary';
import { normalizeOrigin, type OriginPolicy } from '../../caller/origins.js';
import type { Handler } from '../dispatch/handler.js';

/**
 * CORS for the allowed origins only. The answer always varies by `Origin` (even for refused origins,
 * which get no `Access-Control-Allow-Origin`), so a shared cache never hands one origin's answer to another.
 *
 * `refusalsReadable`: a page on a refused origin may still read the answer, for a route that itself
 * refuses every such origin with `403 origin_not_allowed` before doing anything else (the client-token
 * route). The page then learns why, instead of a bare "blocked by CORS policy"; the refusal holds no
 * secret, and no token is ever minted for that origin. Opaque (`null`) origins stay unanswered.
 */
export function allowedOriginsCors(
  originPolicy: OriginPolicy,
  {
    methods,
    allowedHeaders,
    refusalsReadable = false,
  }: { methods: string[]; allowedHeaders: string[]; refusalsReadable?: boolean },
): Handler[] {
  const varyOrigin: Handler = (_req, res, next) => {
    vary(res, 'Origin');
    next();
  };
  const handler = cors({
    origin: (origin, callback) => {
      // An allowed origin sent in its normalised form (what browsers send) is allowed as it stands.
      if (origin !== undefined && originPolicy.isAllowed(origin)) {
        callback(null, true);
        return;
      }
      const normalized = origin === undefined ? undefined : normalizeOrigin(origin);
      callback(null, normalized !== undefined && (refusalsReadable || originPolicy.isAllowed(normalized)));
    },
    methods,
    allowedHeaders,
    exposedHeaders: ['retry-after', 'www-authenticate', 'x-request-id'],
    maxAge: 600,
  });
  return [varyOrigin, handler];
}
