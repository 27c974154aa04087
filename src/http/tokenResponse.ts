import type { Response } from 'express';

/** Token answers must never be stored by a browser or a shared cache (RFC 6749 §5.1). */
export function sendToken(res: Response, body: object): void {
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Pragma', 'no-cache');
  res.type('application/json').send(JSON.stringify(body));
}
