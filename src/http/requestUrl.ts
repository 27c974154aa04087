import type { CallerReader } from '../caller/requestCaller.js';
import type { BrokerRequest } from './dispatch/handler.js';
import { splitTarget } from './dispatch/routeMatcher.js';

/**
 * The URL a DPoP proof's `htu` must name: `PUBLIC_URL` followed by the request's path when it is set (the
 * `Host` header is the client's to write, so production configures it). Otherwise this request as the
 * client addressed the broker, scheme and host included. Behind a reverse proxy they come from
 * `X-Forwarded-Proto` and `X-Forwarded-Host`, which are honoured only for the proxies `TRUST_PROXY`
 * names, so set it (or have the proxy keep `Host`), else the broker sees its internal URL and refuses
 * every proof. An absolute-form target names scheme and host itself (RFC 9112 §3.2.2). Query and fragment
 * are ignored later (RFC 9449 §4.3 step 9); `originalUrl` keeps the path exactly as the client sent it.
 */
export function requestUrl(req: BrokerRequest, caller: CallerReader, publicUrl?: string): string | undefined {
  const { authority, path } = splitTarget(req.originalUrl ?? req.url ?? '');
  if (publicUrl !== undefined) return `${publicUrl}${path}`;
  if (authority !== undefined) return `${authority}${path}`;
  const host = caller.host(req);
  if (!host) return undefined;
  return `${caller.protocol(req)}://${host}${path}`;
}
