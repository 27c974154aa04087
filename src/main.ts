// First: with tracing on, the SDK must hook http, undici and ioredis before anything below loads them.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { config as loadDotenv } from 'dotenv';
import { createBroker } from './broker.js';
import { devOrigins } from './caller/origins.js';
import { systemClock } from './clock.js';
import { type Config, ConfigError, loadConfig } from './config/index.js';
import { configWarnings, probeUpstreams, unreachableWarning } from './config/startupChecks.js';
import { limitServer, serverOptions } from './http/connectionCaps.js';
import { createLogger, type Logger } from './telemetry/logger.js';
import { tracing } from './telemetry/tracingPreload.js';

/**
 * The only module that reads `process.env`, listens, and handles signals. Everything else is built by
 * factories from what this passes down.
 */
async function main(): Promise<void> {
  loadDotenv({ quiet: true });
  let env: Record<string, string | undefined> = process.env;
  let config = parseOrExit(env);
  const logger = createLogger({ level: config.logLevel, traceIds: tracing !== undefined });

  let closeDevUpstream: (() => Promise<void>) | undefined;
  if (config.upstreams.length === 0) {
    const dev = await startDevMode(config, logger);
    env = { ...process.env, ...dev.env };
    config = parseOrExit(env);
    closeDevUpstream = dev.close;
  }

  const devUpstream = closeDevUpstream !== undefined;
  const upstreamProbes = await probeUpstreams(config);
  const unreachable = [...upstreamProbes].flatMap(
    ([name, probe]) => unreachableWarning(probe, config.namedUpstreams ? name : undefined) ?? [],
  );
  for (const warning of [...configWarnings(config, { devUpstream }), ...unreachable]) {
    logger.warn({ check: warning.code }, warning.message);
  }

  const broker = await createBroker({
    config,
    logger,
    clock: systemClock,
    demo: devUpstream,
    upstreamProbes,
    reload: { env },
    tracer: tracing?.tracer,
  });
  // SIGHUP re-reads every `*_FILE` setting, as the folder watches do on a change.
  process.on('SIGHUP', () => void broker.reloader?.reload('SIGHUP'));
  const server = createServer(serverOptions, broker.app);
  server.on('upgrade', broker.upgrade);
  server.on('clientError', broker.clientError);
  // Counts sockets, so an upgraded WebSocket holds its place until it closes; closes idle ones.
  limitServer(server, broker.connectionCaps);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  logger.info({ port, host: config.host, production: config.production }, 'token-broker listening');
  const { metricsApp } = broker;
  if (metricsApp) {
    // Not drained on shutdown: scrapes keep answering while the main port drains, and exit ends them.
    const metricsServer = createServer(serverOptions, metricsApp);
    metricsServer.on('clientError', broker.clientError);
    limitServer(metricsServer, broker.metricsConnectionCaps);
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
    // A WebSocket never drains by itself: it is told the broker is going away (1001), and reconnects elsewhere.
    broker.websockets.closeAll();
    // A keep-alive socket that looks idle may already carry the client's next request, unread: closing it
    // at once would cut that request (RFC 9112 §9.3.1's race). So stop listening without touching open
    // sockets (http.Server#close would close idle ones at once), give busy clients a moment to send on
    // them, each answer now saying `Connection: close`, and only then close what is still idle, until
    // `close` completes.
    let sweep: NodeJS.Timeout | undefined;
    const grace = setTimeout(
      () => {
        server.closeIdleConnections();
        sweep = setInterval(() => server.closeIdleConnections(), 50);
        sweep.unref();
      },
      Math.min(idleGraceMs, config.shutdownTimeoutMs),
    );
    grace.unref();
    net.Server.prototype.close.call(server, async () => {
      clearTimeout(force);
      clearTimeout(grace);
      clearInterval(sweep);
      await broker.close();
      await closeDevUpstream?.();
      // Every request has ended, so has its span: the SDK exports what its batch still holds.
      await tracing?.shutdown().catch((error: unknown) => {
        logger.warn({ err: error }, 'exporting the last spans failed');
      });
      logger.info('stopped');
      // The destination is asynchronous: exit only once the last lines are written.
      logger.flush(() => process.exit(0));
    });
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

/** How long keep-alive sockets idle at SIGTERM stay open for a request already on its way. */
const idleGraceMs = 1_000;

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
    env.ALLOWED_ORIGINS = devOrigins(config.port).join(',');
  }
  return { env, close: upstream.close };
}

main().catch((error: unknown) => {
  console.error('token-broker failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
