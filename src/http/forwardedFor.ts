import type { Request } from 'express';
import { canonicalIp } from '../ip.js';

/**
 * The `X-Forwarded-For` chain the broker can vouch for, client first: the addresses `TRUST_PROXY` lets
 * Express take from the client's `X-Forwarded-For` (`req.ips`, empty when no proxy is trusted), then the
 * peer that connected to us. Whatever else the client wrote in the field is dropped, so the API is never
 * handed an address the client made up.
 */
export function trustedForwardedFor(req: Request): string[] {
  const peer = req.socket.remoteAddress;
  return [...req.ips, ...(peer ? [peer] : [])].map((address) => canonicalIp(address) ?? address);
}
