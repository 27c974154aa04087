import { performance } from 'node:perf_hooks';
import type { RequestHandler } from 'express';
import type { ErrorCode } from '../errors.js';
import type { Metrics, MintRoute, VerificationOutcome } from '../metrics.js';

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

/**
 * Counts what the token routes and the proxy answered, from the outside: the routes stay unaware of
 * metrics. The outcome is the problem `code` that `sendProblem` left in `res.locals`, or success; a
 * proxied request whose token passed verification carries its claims in `res.locals.clientToken`.
 */
export function requestMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const route = mintRoute(req.method, req.path);
    const proxied = req.path === '/api/proxy' || req.path.startsWith('/api/proxy/');
    if (!route && !proxied) {
      next();
      return;
    }
    const started = performance.now();
    // `close` also fires when the client goes away mid-stream, which `finish` would miss.
    res.once('close', () => {
      const code = res.locals.problemCode as ErrorCode | undefined;
      if (route) {
        metrics.recordMint(route, res.statusCode < 400 ? 'issued' : (code ?? 'internal_error'));
        return;
      }
      metrics.observeProxyRequest({
        // Set by the proxy route from the configured names only, so a client cannot mint label values.
        upstream: typeof res.locals.upstream === 'string' ? res.locals.upstream : 'none',
        method: req.method,
        status: res.statusCode,
        seconds: (performance.now() - started) / 1000,
      });
      if (res.locals.clientToken !== undefined) metrics.recordVerification('valid');
      else if (code && verificationCodes.has(code)) metrics.recordVerification(code as VerificationOutcome);
    });
    next();
  };
}
