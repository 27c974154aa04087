import { performance } from 'node:perf_hooks';
import parseurl from 'parseurl';
import type { Metrics, MintRoute, VerificationOutcome } from '../../telemetry/metrics.js';
import type { BrokerRequest, BrokerResponse, Handler } from '../dispatch/handler.js';
import { routeName } from '../routeName.js';

const verificationCodes: ReadonlySet<string> = new Set<VerificationOutcome>([
  'invalid_client_token',
  'invalid_dpop_proof',
  'origin_mismatch',
  'ip_mismatch',
  'token_revoked',
]);

function mintRoute(method: string, path: string): MintRoute | undefined {
  if (path === '/api/client-token' && (method === 'GET' || method === 'POST')) return 'client-token';
  if (path === '/api/auth/claim' && method === 'POST') return 'claim';
  return undefined;
}

/** Counts a 4xx problem answer; the caller has already looked at the status. */
function countRefusal(metrics: Metrics, req: BrokerRequest, res: BrokerResponse): void {
  const code = res.locals.problemCode;
  if (code !== undefined && res.statusCode < 500) metrics.recordRefusal(code, routeName(req));
}

/**
 * Counts what the token routes and the proxy answered, from the outside: the routes stay unaware of
 * metrics. The outcome is the problem `code` that `sendProblem` left in `res.locals`, or success; a
 * proxied request whose token passed verification carries its claims in `res.locals.clientToken`.
 */
export function requestMetrics(metrics: Metrics): Handler {
  return (req, res, next) => {
    // Matched as the routes are: in any letter case, with or without a trailing slash.
    const path = (parseurl(req)?.pathname ?? '').toLowerCase().replace(/(.)\/$/, '$1');
    const route = mintRoute(req.method ?? '', path);
    const proxied = path === '/api/proxy' || path.startsWith('/api/proxy/');
    if (!route && !proxied) {
      res.once('close', () => {
        if (res.statusCode >= 400) countRefusal(metrics, req, res);
      });
      next();
      return;
    }
    const started = performance.now();
    // `close` also fires when the client goes away mid-stream, which `finish` would miss.
    res.once('close', () => {
      const code = res.locals.problemCode;
      if (res.statusCode >= 400) countRefusal(metrics, req, res);
      if (route) {
        metrics.recordMint(route, res.statusCode < 400 ? 'issued' : (code ?? 'internal_error'));
        return;
      }
      metrics.observeProxyRequest({
        // Set by the proxy route from the configured names only, so a client cannot mint label values.
        upstream: res.locals.upstream ?? 'none',
        method: req.method ?? '',
        status: res.statusCode,
        seconds: (performance.now() - started) / 1000,
      });
      if (res.locals.clientToken !== undefined) metrics.recordVerification('valid');
      else if (code && verificationCodes.has(code)) metrics.recordVerification(code as VerificationOutcome);
    });
    next();
  };
}
