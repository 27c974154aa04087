import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { exportJWK, generateKeyPair } from 'jose';
import type { Logger } from '../telemetry/logger.js';

/** The few parts of oidc-provider we use; the package ships no type declarations. */
interface KoaContext {
  method: string;
  path: string;
  req: IncomingMessage;
}
interface OidcProvider {
  use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
  on(event: string, listener: (ctx: KoaContext, error: Error) => void): void;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}
interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: { InvalidTarget: new (description?: string) => Error };
}

type Stored = { payload: Record<string, unknown>; expiresAt: number | undefined };

/**
 * oidc-provider's storage contract, in memory. Handing it our own adapter also keeps it from printing its
 * "development-only adapter" warning on every start.
 * @see https://github.com/panva/node-oidc-provider/blob/main/example/my_adapter.js
 */
function memoryAdapter(store: Map<string, Stored>, model: string) {
  const key = (id: string) => `${model}:${id}`;
  const live = (entry: Stored | undefined) =>
    entry && (entry.expiresAt === undefined || entry.expiresAt > Date.now()) ? entry.payload : undefined;
  const findBy = (field: string, value: string) =>
    [...store.entries()].find(
      ([id, entry]) => id.startsWith(`${model}:`) && entry.payload[field] === value,
    )?.[1];
  return {
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
      store.set(key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
    },
    find: async (id: string) => live(store.get(key(id))),
    findByUid: async (uid: string) => live(findBy('uid', uid)),
    findByUserCode: async (userCode: string) => live(findBy('userCode', userCode)),
    async consume(id: string) {
      const entry = store.get(key(id));
      if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    },
    async destroy(id: string) {
      store.delete(key(id));
    },
    async revokeByGrantId(grantId: string) {
      for (const [id, entry] of store) if (entry.payload.grantId === grantId) store.delete(id);
    },
  };
}

export interface AuthServerOptions {
  /** Extra client registrations (oidc-provider client metadata), next to the two generated clients. */
  clients?: Record<string, unknown>[];
  /**
   * Clients that authenticate with `private_key_jwt` (RFC 7523 §2.2), each registered with the public
   * JWK Set of its key, for the client credentials grant.
   */
  privateKeyJwtClients?: { clientId: string; jwks: { keys: Record<string, unknown>[] } }[];
  /** Seconds; the `expires_in` of client credentials tokens. */
  accessTokenTtl?: number;
  logger?: Logger;
  port?: number;
  /** The RFC 8707 resource indicator (and `aud`) of the demo API. */
  resource?: string;
  /**
   * Serve over TLS with this certificate and key, asking every client for a certificate and verifying
   * it against `ca`: turns on RFC 8705 (`tls_client_auth`, `self_signed_tls_client_auth`,
   * certificate-bound tokens). PEM text.
   */
  tls?: { cert: string; key: string; ca: string };
}

const peerCertificate = (ctx: KoaContext) => (ctx.req.socket as TLSSocket).getPeerX509Certificate();

/**
 * oidc-provider's RFC 8705 feature over the TLS socket of each request: the client certificate, whether
 * the server's CA verified it, and its subject matched against a client's registered DN or DNS name.
 */
const mutualTls = {
  enabled: true,
  certificateBoundAccessTokens: true,
  tlsClientAuth: true,
  selfSignedTlsClientAuth: true,
  getCertificate: peerCertificate,
  certificateAuthorized: (ctx: KoaContext) => (ctx.req.socket as TLSSocket).authorized,
  certificateSubjectMatches(ctx: KoaContext, property: string, expected: string) {
    const certificate = peerCertificate(ctx);
    if (!certificate) return false;
    // Node lists the RDNs first to last, one a line; RFC 4514's string form names the last first.
    if (property === 'tls_client_auth_subject_dn') {
      return certificate.subject.split('\n').reverse().join(',') === expected;
    }
    if (property === 'tls_client_auth_san_dns') {
      return (certificate.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
    }
    return false;
  },
};

export interface AuthServer {
  issuer: string;
  tokenUrl: string;
  jwksUri: string;
  /** A client registered for `client_secret_basic`. */
  clientId: string;
  clientSecret: string;
  /** A second client registered for `client_secret_post`. */
  postClient: { clientId: string; clientSecret: string };
  resource: string;
  /** The only scope the demo API knows. */
  scope: string;
  /** How many `POST /token` requests reached the server. */
  tokenRequests(): number;
  close(): Promise<void>;
}

/** A logical resource URI under the reserved `.test` TLD: it names the demo API, nothing resolves it. */
export const defaultDemoResource = 'https://demo-api.token-broker.test/';

/**
 * A real OpenID Provider (oidc-provider) on 127.0.0.1 that issues RFC 9068 JWT access tokens through the
 * client credentials grant, for `npm start` without an upstream and for integration tests. Client
 * secrets and signing keys are random per start.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4
 * @see https://www.rfc-editor.org/rfc/rfc8707
 */
export async function startAuthServer(options: AuthServerOptions = {}): Promise<AuthServer> {
  // A variable specifier: oidc-provider is a dev dependency without types, loaded only by dev code.
  const moduleName = 'oidc-provider';
  const { default: Provider, errors } = (await import(moduleName)) as OidcProviderModule;
  const { accessTokenTtl = 300, resource = defaultDemoResource } = options;
  const logger = options.logger?.child({ component: 'dev-auth-server' });
  const scope = 'api:read';

  const { tls } = options;
  // A certificate is asked for but not required: clients of the other methods connect without one.
  const server = tls
    ? createHttpsServer({ ...tls, requestCert: true, rejectUnauthorized: false })
    : createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  const client = (method: string) => ({
    clientId: `demo-${method === 'client_secret_post' ? 'post' : 'basic'}-${randomBytes(4).toString('hex')}`,
    clientSecret: randomBytes(32).toString('base64url'),
    method,
  });
  const basic = client('client_secret_basic');
  const post = client('client_secret_post');
  const store = new Map<string, Stored>();

  const provider = new Provider(issuer, {
    adapter: (model: string) => memoryAdapter(store, model),
    jwks: { keys: [signingKey] },
    clients: [
      ...[basic, post].map((registration) => ({
        client_id: registration.clientId,
        client_secret: registration.clientSecret,
        token_endpoint_auth_method: registration.method,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope,
      })),
      ...(options.privateKeyJwtClients ?? []).map((registration) => ({
        client_id: registration.clientId,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: registration.jwks,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope,
      })),
      ...(options.clients ?? []),
    ],
    // Spelled out although they are the defaults: the tests of private_key_jwt rely on them.
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'private_key_jwt',
      ...(tls ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
    ],
    enabledJWA: { clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'] },
    scopes: [scope],
    ttl: { ClientCredentials: accessTokenTtl },
    features: {
      ...(tls ? { mTLS: mutualTls } : {}),
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string) => {
          if (indicator !== resource) throw new errors.InvalidTarget('unknown resource');
          return { scope, audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: accessTokenTtl };
        },
      },
    },
  });

  let tokenRequests = 0;
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token') tokenRequests += 1;
    await next();
  });
  // Error messages only: oidc-provider's error objects are safe, the request context is not.
  provider.on('grant.error', (_ctx, error) =>
    logger?.debug({ error: error.message }, 'token request refused'),
  );
  provider.on('server_error', (_ctx, error) =>
    logger?.error({ error: error.message }, 'authorization server error'),
  );
  server.on('request', provider.callback());
  logger?.debug({ issuer }, 'dev authorization server listening');

  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    jwksUri: `${issuer}/jwks`,
    clientId: basic.clientId,
    clientSecret: basic.clientSecret,
    postClient: { clientId: post.clientId, clientSecret: post.clientSecret },
    resource,
    scope,
    tokenRequests: () => tokenRequests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
