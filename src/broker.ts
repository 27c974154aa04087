import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import { createApiKeyVerifier } from './apiKeys.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import type { Logger } from './logger.js';
import { createOriginPolicy } from './origins.js';
import { createProxyForwarder } from './proxy/forward.js';
import { createClientTokens } from './signing/clientTokens.js';
import { loadSigningKeys } from './signing/keys.js';
import { createRevocationList } from './signing/revocations.js';
import { createMemoryStore } from './store/memoryStore.js';
import { createTokenCache } from './upstream/tokenCache.js';
import { createTokenClient } from './upstream/tokenClient.js';
import type { TokenCache } from './upstream/types.js';

export interface BrokerDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  /** undici dispatcher for upstream requests; the global one by default. */
  dispatcher?: Dispatcher;
  /** Serve the demo page (dev upstream only). */
  demo?: boolean;
}

export interface Broker {
  app: Express;
  cache: TokenCache;
  /** Stops timers and closes pools; the HTTP server is the caller's to close. */
  close(): Promise<void>;
}

/** Builds every part from the config and wires them into the app. Nothing listens. */
export async function createBroker({ config, logger, clock, dispatcher, demo }: BrokerDeps): Promise<Broker> {
  const upstream = config.upstream;
  if (!upstream) throw new Error('no upstream configured');
  const keys = await loadSigningKeys({ jwks: config.signingKeys, production: config.production, logger });
  const client = createTokenClient({
    config: upstream,
    clock,
    logger,
    ...(dispatcher ? { dispatcher } : {}),
  });
  const store = createMemoryStore({ clock });
  const cache = createTokenCache({ client, config: upstream, store, clock, logger });
  const revocations = createRevocationList({
    clock,
    clockToleranceSeconds: config.clientToken.clockToleranceSeconds,
  });
  const clientTokens = createClientTokens({ keys, config: config.clientToken, clock, revocations });
  const proxy = upstream.apiUrl
    ? createProxyForwarder({
        apiUrl: upstream.apiUrl,
        cache,
        logger,
        timeouts: {
          connectMs: upstream.timeoutMs,
          headersMs: upstream.timeoutMs,
          bodyMs: upstream.timeoutMs,
          totalMs: upstream.apiTimeoutMs,
        },
        maxReplayBytes: upstream.maxReplayBytes,
      })
    : undefined;
  const app = createApp({
    config,
    logger,
    clock,
    originPolicy: createOriginPolicy(config.allowedOrigins),
    apiKeys: createApiKeyVerifier(config.apiKeys),
    clientTokens,
    publicJwks: keys.publicJwks,
    cache,
    revocations,
    proxy,
    demo: demo ?? false,
  });
  return {
    app,
    cache,
    async close() {
      cache.close();
      revocations.close();
      await proxy?.close();
      await store.close();
    },
  };
}
