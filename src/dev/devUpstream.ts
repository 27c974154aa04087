import type { Logger } from '../telemetry/logger.js';
import { startAuthServer } from './authServer.js';
import { startDemoApi } from './demoApi.js';

export interface DevUpstream {
  /** The `UPSTREAM_*` settings that point the broker at the local servers (the secret included). */
  env: Record<string, string>;
  close(): Promise<void>;
}

/**
 * Starts the local authorization server and the demo API it protects, both on 127.0.0.1, and returns
 * the settings that make the broker use them. For `npm start` outside production only.
 */
export async function startDevUpstream(deps: {
  logger: Logger;
  /** Say loudly that the broker uses them (`npm start`); `token-broker dev-upstream` prints its own lines. */
  announce?: boolean;
}): Promise<DevUpstream> {
  const { logger, announce = true } = deps;
  const auth = await startAuthServer({ logger });
  let api: Awaited<ReturnType<typeof startDemoApi>>;
  try {
    api = await startDemoApi({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.resource, logger });
  } catch (error) {
    await auth.close();
    throw error;
  }
  if (announce) {
    logger.warn(
      { issuer: auth.issuer, apiUrl: api.url, clientId: auth.clientId },
      'DEV UPSTREAM: no upstream configured, using a local authorization server and demo API (never in production)',
    );
  }
  return {
    env: {
      UPSTREAM_ISSUER: auth.issuer,
      UPSTREAM_CLIENT_ID: auth.clientId,
      UPSTREAM_CLIENT_SECRET: auth.clientSecret,
      UPSTREAM_RESOURCE: auth.resource,
      UPSTREAM_SCOPE: auth.scope,
      UPSTREAM_API_URL: api.url,
    },
    close: async () => {
      await Promise.all([api.close(), auth.close()]);
    },
  };
}
