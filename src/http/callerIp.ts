import type { Request } from 'express';
import { BrokerError } from '../errors.js';
import { canonicalIp } from '../ip.js';

/**
 * The caller's address as Express derives it under `trust proxy` (the socket address unless proxies
 * are trusted), canonicalised exactly as when a token is minted, so both sides compare alike.
 */
export function callerIp(req: Request): string {
  const ip = canonicalIp(req.ip ?? req.socket.remoteAddress ?? '');
  if (!ip) throw new BrokerError('invalid_request', { detail: 'the caller address could not be determined' });
  return ip;
}
