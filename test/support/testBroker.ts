import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Broker, createBroker } from '../../src/broker.js';
import { type Clock, systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { captureLogs, registerSecret } from './logs.js';
import { startTestAuthServer, type TestAuthServer } from './oidcProvider.js';

export interface TestBroker {
  url: string;
  broker: Broker;
  apiKey: string;
  auth: TestAuthServer;
  logs: ReturnType<typeof captureLogs>;
  close(): Promise<void>;
}

/**
 * A broker built exactly as main.ts builds it (loadConfig + createBroker), listening on a real socket on
 * 127.0.0.1, against a real oidc-provider (started here unless one is given).
 */
export async function startTestBroker(
  env: Record<string, string> = {},
  options: { auth?: TestAuthServer; clock?: Clock } = {},
): Promise<TestBroker> {
  const auth = options.auth ?? (await startTestAuthServer());
  const apiKey = registerSecret('broker api key', `key-${randomBytes(24).toString('base64url')}`);
  const config = loadConfig({
    NODE_ENV: 'test',
    UPSTREAM_TOKEN_URL: auth.tokenUrl,
    UPSTREAM_CLIENT_ID: auth.clientId,
    UPSTREAM_CLIENT_SECRET: auth.clientSecret,
    UPSTREAM_RESOURCE: auth.resource,
    UPSTREAM_SCOPE: auth.scope,
    BROKER_API_KEYS: apiKey,
    ALLOWED_ORIGINS: 'https://app.example.com,https://*.apps.example.com',
    ...env,
  });
  const logs = captureLogs('info');
  const broker = await createBroker({ config, logger: logs.logger, clock: options.clock ?? systemClock });
  const server: Server = createServer(broker.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    broker,
    apiKey,
    auth,
    logs,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await broker.close();
      if (!options.auth) await auth.close();
    },
  };
}
