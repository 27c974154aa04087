import type { ServerResponse } from 'node:http';

/**
 * Token answers must never be stored by a browser or a shared cache (RFC 6749 §5.1). Written with
 * `res.end`: `res.send` would look up the content type, ETag settings and request freshness, none of
 * which a `no-store` answer uses. (Node drops the body of an answer to HEAD itself.)
 */
export function sendToken(res: ServerResponse, body: object): void {
  const json = JSON.stringify(body);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Pragma', 'no-cache');
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(json));
  res.end(json);
}
