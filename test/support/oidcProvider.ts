import type { UpstreamConfig } from '../../src/config/index.js';
import { type AuthServer, type AuthServerOptions, startAuthServer } from '../../src/dev/authServer.js';
import { registerSecret } from './logs.js';
import { upstreamConfigFor } from './oauthServers.js';

export interface TestAuthServer extends AuthServer {
  /** An UpstreamConfig for the `client_secret_basic` client, with the resource and scope set. */
  upstreamConfig(overrides?: Partial<UpstreamConfig>): UpstreamConfig;
}

/**
 * A real oidc-provider on 127.0.0.1 (the dev authorization server) whose client secrets are registered
 * with the leak check.
 */
export async function startTestAuthServer(options: AuthServerOptions = {}): Promise<TestAuthServer> {
  const server = await startAuthServer(options);
  registerSecret('oidc basic client secret', server.clientSecret);
  registerSecret('oidc post client secret', server.postClient.clientSecret);
  return {
    ...server,
    upstreamConfig: (overrides = {}) =>
      upstreamConfigFor(server.tokenUrl, {
        clientId: server.clientId,
        clientSecret: server.clientSecret,
        resource: server.resource,
        scope: server.scope,
        ...overrides,
      }),
  };
}
