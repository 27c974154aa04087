import { systemClock } from '../clock.js';
import type { Config } from '../config/index.js';
import { UpstreamError } from '../errors.js';
import { createRedisConnections } from '../store/redisConnection.js';
import { describeRedisTarget } from '../store/redisTarget.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { createTokenClient } from '../upstream/tokenClient.js';

/** One thing `check-config --probe` contacted, and what came back. */
export interface ProbeResult {
  ok: boolean;
  line: string;
}

/**
 * What `check-config` alone cannot tell: whether each upstream's authorization server gives the broker a
 * token with these settings, and whether Redis answers. One real token request per distinct upstream
 * (the token is dropped), and one PING.
 */
export async function probe(config: Config, redisTimeoutMs = 3_000): Promise<ProbeResult[]> {
  // Each result is a line of its own; the parts' log lines would only repeat it.
  const logger = createLogger({ level: 'silent' }, { write: () => {} });
  const results = await Promise.all(
    config.upstreams.map(({ name, config: upstream }) => probeUpstream(name, upstream, logger)),
  );
  if (config.upstreams.length === 0) {
    results.push({ ok: true, line: 'upstream: none configured (npm start runs the dev upstream)' });
  }
  if (config.redisTarget) results.push(await probeRedis(config.redisTarget, redisTimeoutMs, logger));
  return results;
}

async function probeUpstream(
  name: string,
  upstream: Config['upstreams'][number]['config'],
  logger: Logger,
): Promise<ProbeResult> {
  const label = `upstream ${name}`;
  if (upstream.apiKey !== undefined) {
    return { ok: true, line: `${label}: a static API key, no token endpoint to ask` };
  }
  const client = createTokenClient({ config: upstream, clock: systemClock, logger });
  try {
    const endpoint = new URL(await client.tokenEndpoint());
    const token = await client.clientCredentials();
    const seconds = Math.round((token.expiresAt - systemClock.now()) / 1000);
    return {
      ok: true,
      line: `${label}: token obtained from ${endpoint.origin}${endpoint.pathname}, valid ${seconds} s`,
    };
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error;
    const status = error.httpStatus === undefined ? '' : ` (HTTP ${error.httpStatus})`;
    const description = error.description ? `: ${error.description}` : '';
    return { ok: false, line: `${label}: no token: ${error.error}${status}${description}` };
  }
}

async function probeRedis(
  target: NonNullable<Config['redisTarget']>,
  timeoutMs: number,
  logger: Logger,
): Promise<ProbeResult> {
  const where = describeRedisTarget(target);
  const connections = createRedisConnections({ target, logger, commandTimeoutMs: timeoutMs });
  try {
    if ((await connections.ready(timeoutMs)) !== 'ok') {
      return {
        ok: false,
        line: `redis (${where}): unreachable: ${connections.cause() ?? `no answer within ${timeoutMs} ms`}`,
      };
    }
    return { ok: true, line: `redis (${where}): ${await connections.client.ping()}` };
  } finally {
    await connections.close();
  }
}
