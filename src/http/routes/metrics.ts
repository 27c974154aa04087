import express, { type Express, type RequestHandler } from 'express';
import type { ApiKeyVerifier } from '../../auth/apiKeys.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { bearerToken, requireApiKey } from '../middleware/apiKeyAuth.js';
import { errorHandler, notFoundHandler } from '../problem.js';

export interface MetricsRouteDeps {
  metrics: Metrics;
  apiKeys: ApiKeyVerifier;
  /** `METRICS_REQUIRE_API_KEY`: scrapers send a broker API key as `Authorization: Bearer`. */
  requireApiKey: boolean;
}

/** `GET /metrics`: the Prometheus text exposition of the broker's registry. */
export function metricsHandler({
  metrics,
  apiKeys,
  requireApiKey: protect,
}: MetricsRouteDeps): RequestHandler {
  return async (req, res) => {
    if (protect) requireApiKey(apiKeys, bearerToken(req));
    const body = await metrics.registry.metrics();
    res.setHeader('Cache-Control', 'no-store');
    res.type(metrics.registry.contentType).send(body);
  };
}

/**
 * The app behind `METRICS_PORT`: `/metrics` and nothing else, so the port can be opened to the
 * monitoring network alone while the main port carries traffic.
 */
export function createMetricsApp(deps: MetricsRouteDeps & { logger: Logger }): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/metrics', metricsHandler(deps));
  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger));
  return app;
}
