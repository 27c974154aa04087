import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { config as loadDotenv } from 'dotenv';
import { createBroker } from './broker.js';
import { systemClock } from './clock.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';

/**
 * The only module that reads `process.env`, listens, and handles signals. Everything else is built by
 * factories from what this passes down.
 */
async function main(): Promise<void> {
  loadDotenv({ quiet: true });
  let config = parseOrExit(process.env);
  const logger = createLogger({ level: config.logLevel });

  let closeDevUpstream: (() => Promise<void>) | undefined;
  if (!config.upstream) {
    const dev = await startDevMode(config, logger);
    config = parseOrExit({ ...process.env, ...dev.env });
    closeDevUpstream = dev.close;
  }

  const broker = await createBroker({
    config,
    logger,
    clock: systemClock,
    demo: closeDevUpstream !== undefined,
  });
  const server = createServer(broker.app);
  // Longer than the usual load balancer idle timeout (60 s), so the balancer closes idle sockets first.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  logger.info({ port, host: config.host, production: config.production }, 'token-broker listening');
  const { metricsApp } = broker;
  if (metricsApp) {
    // Not drained on shutdown: scrapes keep answering while the main port drains, and exit ends them.
    const metricsServer = createServer(metricsApp);
    await new Promise<void>((resolve, reject) => {
      metricsServer.once('error', reject);
      metricsServer.listen(config.metrics.port, config.host, resolve);
    });
    logger.info({ port: (metricsServer.address() as AddressInfo).port }, 'metrics listening');
  }

  let stopping = false;
  // While draining, every answer closes its connection (RFC 9112 §9.6): a keep-alive client moves to
  // another replica instead of reusing this socket and holding the drain open until the timeout.
  server.prependListener('request', (_req, res) => {
    if (stopping) res.setHeader('Connection', 'close');
  });
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info(
      { signal, timeoutMs: config.shutdownTimeoutMs },
      'shutting down: draining in-flight requests',
    );
    const force = setTimeout(() => {
      logger.warn('drain timeout reached: closing remaining connections');
      server.closeAllConnections();
    }, config.shutdownTimeoutMs);
    force.unref();
    // A connection whose answer was already under way when the signal came stays open (keep-alive) once
    // that answer is done; closing the idle ones until `close` completes lets the drain end promptly.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    sweep.unref();
    server.close(async () => {
      clearTimeout(force);
      clearInterval(sweep);
      await broker.close();
      await closeDevUpstream?.();
      logger.info('stopped');
      // The destination is asynchronous: exit only once the last lines are written.
      logger.flush(() => process.exit(0));
    });
    // Idle keep-alive sockets would otherwise hold `close` open until they time out.
    server.closeIdleConnections();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

function parseOrExit(env: Record<string, string | undefined>): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`token-broker: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
}

/**
 * Outside production with no upstream configured: a real local authorization server and demo API on
 * loopback, so `npm start` works on a fresh clone. oidc-provider is a dev dependency, hence the
 * dynamic import; production never reaches this (loadConfig refuses a production config without one).
 */
async function startDevMode(config: Config, logger: Logger) {
  const { startDevUpstream } = await import('./dev/devUpstream.js');
  const upstream = await startDevUpstream({ logger });
  const env: Record<string, string> = { ...upstream.env };
  if (config.apiKeys.length === 0) {
    const apiKey = `dev-${randomBytes(24).toString('base64url')}`;
    env.BROKER_API_KEYS = apiKey;
    // Printed, not logged: log pipelines keep lines, and this key is only for the person at the terminal.
    process.stderr.write(`\n  dev API key (for /api/auth/claim and /api/upstream-token): ${apiKey}\n\n`);
  }
  if (config.allowedOrigins.length === 0) {
    env.ALLOWED_ORIGINS = `http://localhost:${config.port},http://127.0.0.1:${config.port}`;
  }
  return { env, close: upstream.close };
}

main().catch((error: unknown) => {
  console.error('token-broker failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
