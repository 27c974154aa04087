import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';
import type { Config } from '../config/index.js';
import { BrokerError } from '../errors.js';
import { canonicalIp } from './ip.js';

/**
 * What a request says about its caller, believed only as far as `TRUST_PROXY` allows: the same answers
 * Express's `req.ip`, `req.ips`, `req.protocol` and `req.host` give under its `trust proxy` setting, for
 * requests that never pass through Express (directRoutes.ts) as for those that do.
 */
export interface CallerReader {
  /** The caller's address, canonicalised exactly as when a token is minted, so both sides compare alike. */
  ip(req: IncomingMessage): string;
  /**
   * The `X-Forwarded-For` chain the broker can vouch for, client first: the addresses taken from the
   * client's `X-Forwarded-For` through trusted proxies, then the peer that connected to us. Whatever else
   * the client wrote in the field is dropped, so the API is never handed an address the client made up.
   */
  forwardedFor(req: IncomingMessage): string[];
  /** `http` or `https` as the caller reached the broker (`X-Forwarded-Proto` from a trusted proxy). */
  protocol(req: IncomingMessage): string;
  /** The host the caller addressed (`X-Forwarded-Host` from a trusted proxy, else `Host`), port included. */
  host(req: IncomingMessage): string | undefined;
}

/** `TRUST_PROXY` as a proxy-addr trust function: nobody, the nearest N hops, or the listed ranges. */
function compileTrust(trustProxy: Config['trustProxy']): (address: string, hop: number) => boolean {
  if (typeof trustProxy === 'number') return (_address, hop) => hop < trustProxy;
  return proxyaddr.compile(trustProxy === false ? [] : trustProxy);
}

function firstListed(value: string): string {
  const comma = value.indexOf(',');
  return (comma < 0 ? value : value.slice(0, comma)).trim();
}

export function createCallerReader(trustProxy: Config['trustProxy']): CallerReader {
  const trust = compileTrust(trustProxy);
  const peerTrusted = (req: IncomingMessage) => trust(req.socket.remoteAddress ?? '', 0);
  return {
    ip(req) {
      // Undefined once the socket is gone.
      const ip = canonicalIp(proxyaddr(req, trust) ?? '');
      if (!ip)
        throw new BrokerError('invalid_request', { detail: 'the caller address could not be determined' });
      return ip;
    },
    forwardedFor(req) {
      // proxyaddr.all: the peer first, then the trusted X-Forwarded-For entries from the nearest outwards.
      const [peer, ...forwarded] = proxyaddr.all(req, trust);
      return [...forwarded.reverse(), ...(peer ? [peer] : [])].map(
        (address) => canonicalIp(address) ?? address,
      );
    },
    protocol(req) {
      const own = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
      const header = req.headers['x-forwarded-proto'];
      if (typeof header !== 'string' || !peerTrusted(req)) return own;
      return firstListed(header) || own;
    },
    host(req) {
      const forwarded = req.headers['x-forwarded-host'];
      const host =
        typeof forwarded === 'string' && forwarded && peerTrusted(req)
          ? firstListed(forwarded)
          : req.headers.host;
      return host || undefined;
    },
  };
}
