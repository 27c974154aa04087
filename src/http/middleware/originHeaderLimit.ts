import { BrokerError } from '../../errors.js';
import type { Handler } from '../dispatch/handler.js';

/** Longest `Origin` or `Referer` accepted: far above any real page URL, far below what parsing may cost. */
export const maxOriginHeaderBytes = 2048;

/**
 * Refuses an oversized `Origin` or `Referer` before anything parses it as a URL: both are compared on
 * every token route and proxied request, and a megabyte of either buys nothing but work.
 */
export const originHeaderLimit: Handler = (req, _res, next) => {
  for (const name of ['origin', 'referer'] as const) {
    const value = req.headers[name];
    if (value !== undefined && Buffer.byteLength(value) > maxOriginHeaderBytes) {
      throw new BrokerError('invalid_request', {
        detail: `the ${name === 'origin' ? 'Origin' : 'Referer'} header must be at most ${maxOriginHeaderBytes} bytes`,
      });
    }
  }
  next();
};
