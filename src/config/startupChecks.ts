import net from 'node:net';
import { devOrigins } from '../caller/origins.js';
import type { Config, UpstreamConfig } from './index.js';
import { proxySetting } from './upstreamNames.js';

/**
 * Settings that start fine but leave a part of the broker off, said once at start-up so an operator
 * does not have to find out from a bare 403 or 404.
 */
export interface StartupWarning {
  code:
    | 'proxy_disabled'
    | 'no_allowed_origins'
    | 'dev_origin_replaced'
    | 'upstream_unreachable'
    | 'metrics_refused'
    | 'plain_http'
    | 'no_api_keys';
  message: string;
}

/**
 * The warnings a config deserves. `devUpstream`: the embedded dev upstream runs, whose demo page is
 * served from the broker's own origin.
 */
export function configWarnings(config: Config, { devUpstream }: { devUpstream: boolean }): StartupWarning[] {
  const warnings: StartupWarning[] = [];
  // No upstream at all (check-config) means the dev upstream is still to start: it brings its own API,
  // and its own origin when ALLOWED_ORIGINS is empty.
  const devPending = config.upstreams.length === 0;
  for (const { name, config: upstream } of config.upstreams) {
    if (upstream.apiUrl) continue;
    const { setting, route } = proxySetting(name, config.namedUpstreams);
    warnings.push({
      code: 'proxy_disabled',
      message: `${setting} is not set: ${route} is off and answers 404 not_found`,
    });
  }
  // METRICS_REQUIRE_API_KEY=true without keys is a config error; production asks for a key by itself.
  if (config.metrics.requireApiKey && config.metrics.port === undefined && config.apiKeys.length === 0) {
    warnings.push({
      code: 'metrics_refused',
      message:
        '/metrics needs a broker API key and BROKER_API_KEYS is empty: every scrape is refused; set BROKER_API_KEYS, or METRICS_PORT to serve /metrics on a port of its own',
    });
  }
  if (config.production) warnings.push(...plainHttp(config));
  // metrics_refused already says that BROKER_API_KEYS is empty.
  const saidNoKeys = warnings.some(({ code }) => code === 'metrics_refused');
  if (!devPending && !devUpstream && !saidNoKeys && config.apiKeys.length === 0) {
    warnings.push({
      code: 'no_api_keys',
      message:
        'BROKER_API_KEYS is empty: /api/auth/claim, /api/upstream-token, introspection and revocation refuse every caller (401 invalid_api_key); set it, e.g. BROKER_API_KEYS=$(openssl rand -base64 32)',
    });
  }
  if (config.allowedOrigins.length === 0) {
    if (devPending) return warnings;
    warnings.push({
      code: 'no_allowed_origins',
      message:
        'ALLOWED_ORIGINS is empty: every page is refused at /api/client-token (403 origin_not_allowed); set it, e.g. ALLOWED_ORIGINS=https://app.example.com',
    });
  } else if (devUpstream) {
    const own = devOrigins(config.port);
    if (!own.some((origin) => config.allowedOrigins.includes(origin))) {
      warnings.push({
        code: 'dev_origin_replaced',
        message: `ALLOWED_ORIGINS replaces the development default (${own.join(', ')}): the demo page cannot get client tokens; add ${own[0]} to use it`,
      });
    }
  }
  return warnings;
}

/** `http:` to another machine: what crosses it (a client secret, an upstream token, a client token) is readable on the way. */
function plainHttp(config: Config): StartupWarning[] {
  const clear = (url: string | undefined) => {
    if (url === undefined || !url.startsWith('http:')) return false;
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    return host !== 'localhost' && !(net.isIP(host) && isLoopback(host));
  };
  const warnings: StartupWarning[] = [];
  for (const { name, config: upstream } of config.upstreams) {
    const which = config.namedUpstreams ? ` of upstream ${name}` : '';
    for (const [what, url, carries] of [
      ['token endpoint', upstream.tokenUrl ?? upstream.issuer, 'the client secret'],
      ['API', upstream.apiUrl, 'the upstream access token'],
    ] as const) {
      if (clear(url)) {
        warnings.push({
          code: 'plain_http',
          message: `the ${what}${which} is plain http (${new URL(url as string).origin}): ${carries} crosses the network in clear; use https`,
        });
      }
    }
  }
  for (const origin of config.allowedOrigins.filter(clear)) {
    warnings.push({
      code: 'plain_http',
      message: `ALLOWED_ORIGINS lists ${origin}: its pages and their client tokens travel in clear; use https`,
    });
  }
  return warnings;
}

const isLoopback = (ip: string) => ip === '::1' || ip.startsWith('127.');

export type UpstreamProbe = { reachable: true } | { reachable: false; reason: string };

/**
 * Opens (and closes) a TCP connection to the token endpoint, or to the issuer when the endpoint is
 * discovered. A closed port or an unknown host is then a warning at start-up, not a surprise at the
 * first request; it never stops the start, since the upstream may come up after the broker.
 */
export function probeUpstream(
  upstream: UpstreamConfig,
  { timeoutMs }: { timeoutMs: number },
): Promise<UpstreamProbe> {
  const target = new URL((upstream.tokenUrl ?? upstream.issuer) as string);
  const port = Number(target.port) || (target.protocol === 'https:' ? 443 : 80);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const where = `${target.protocol}//${target.host}`;
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (probe: UpstreamProbe) => {
      socket.destroy();
      resolve(probe);
    };
    socket.setTimeout(timeoutMs, () =>
      done({ reachable: false, reason: `no connection to ${where} within ${timeoutMs} ms` }),
    );
    socket.once('connect', () => done({ reachable: true }));
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done({ reachable: false, reason: `cannot connect to ${where} (${error.code ?? error.message})` }),
    );
  });
}

/**
 * Each upstream's probe by name; upstreams with the same token endpoint share one connection attempt. An
 * upstream with a static API key has no token endpoint, and no probe.
 */
export async function probeUpstreams(
  config: Pick<Config, 'upstreams'>,
): Promise<ReadonlyMap<string, UpstreamProbe>> {
  const byTarget = new Map<string, Promise<UpstreamProbe>>();
  const withGrant = config.upstreams.filter(({ config: upstream }) => upstream.apiKey === undefined);
  const probes = await Promise.all(
    withGrant.map(async ({ name, config: upstream }) => {
      const target = (upstream.tokenUrl ?? upstream.issuer) as string;
      const probe =
        byTarget.get(target) ?? probeUpstream(upstream, { timeoutMs: Math.min(upstream.timeoutMs, 2_000) });
      byTarget.set(target, probe);
      return [name, await probe] as const;
    }),
  );
  return new Map(probes);
}

export function unreachableWarning(probe: UpstreamProbe, name?: string): StartupWarning | undefined {
  if (probe.reachable) return undefined;
  const which = name ? `the token endpoint of upstream ${name}` : 'the upstream token endpoint';
  return {
    code: 'upstream_unreachable',
    message: `${which} is unreachable: ${probe.reason}; starting anyway, /readyz answers 503 until it is`,
  };
}
