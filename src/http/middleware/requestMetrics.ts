import { performance } from 'node:perf_hooks';
import type { Metrics, MintRoute, VerificationOutcome } from '../../telemetry/metrics.js';
import type { BrokerResponse, Handler } from '../dispatch/handler.js';
import type { RouteName } from '../dispatch/routeMatcher.js';

const verificationCodes: ReadonlySet<string> = new Set<VerificationOutcome>([
  'invalid_client_token',
  'invalid_dpop_proof',
  'origin_mismatch',
  'ip_mismatch',
  'token_revoked',
]);

/** The mint routes' labels; a client-token preflight or a refused method mints nothing. */
function mintRoute(method: string, route: RouteName | undefined): MintRoute | undefined {
  if (route === 'clientToken' && (method === 'GET' || method === 'POST')) return 'client-token';
  if (route === 'claim') return 'claim';
  return undefined;
}

/** Counts a 4xx problem answer under the matched route's name (`none` for a path no route has). */
function countRefusal(metrics: Metrics, res: BrokerResponse): void {
  const code = res.locals.problemCode;
  if (code !== undefined && res.statusCode < 500) metrics.recordRefusal(code, res.locals.route ?? 'none');
}

/**
 * Counts what the token routes and the proxy answered, from the outside: the routes stay unaware of
 * metrics. The outcome is the problem `code` that `sendProblem` left in `res.locals`, or success; a
 * proxied request whose token passed verification carries its claims in `res.locals.clientToken`.
 */
export function requestMetrics(metrics: Metrics): Handler {
  return (req, res, next) => {
    // The route the listener matched (directRoutes.ts), in any letter case and either form of target.
    const route = mintRoute(req.method ?? '', res.locals.route);
    const proxied = res.locals.route === 'proxy';
    if (!route && !proxied) {
      res.once('close', () => {
        if (res.statusCode >= 400) countRefusal(metrics, res);
      });
      next();
      return;
    }
    const started = performance.now();
    // `close` also fires when the client goes away mid-stream, which `finish` would miss.
    res.once('close', () => {
      const code = res.locals.problemCode;
      if (res.statusCode >= 400) countRefusal(metrics, res);
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
