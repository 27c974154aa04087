import cors from 'cors';
import type { RequestHandler } from 'express';
import { normalizeOrigin, type OriginPolicy } from '../origins.js';

/**
 * CORS for the allowed origins only. The answer always varies by `Origin` (even for refused origins,
 * which get no `Access-Control-Allow-Origin`), so a shared cache never hands one origin's answer to another.
 */
export function allowedOriginsCors(
  originPolicy: OriginPolicy,
  { methods, allowedHeaders }: { methods: string[]; allowedHeaders: string[] },
): RequestHandler[] {
  const vary: RequestHandler = (_req, res, next) => {
    res.vary('Origin');
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
      callback(null, normalized !== undefined && originPolicy.isAllowed(normalized));
    },
    methods,
    allowedHeaders,
    exposedHeaders: ['retry-after', 'www-authenticate', 'x-request-id'],
    maxAge: 600,
  });
  return [vary, handler];
}
