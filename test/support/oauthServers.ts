import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { UpstreamConfig } from '../../src/config/index.js';
import { registerSecret } from './logs.js';

/** One request the fake server received, body included, for asserting what the client sent. */
export interface RecordedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Answers one request; may answer late, slowly, or never (the server still closes). */
export type Behaviour = (req: RecordedRequest, res: ServerResponse) => void | Promise<void>;

export interface FakeTokenServer {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  /** `${url}/oauth/token`; every path reaches the behaviour, this one is a convention. */
  tokenUrl: string;
  requests: RecordedRequest[];
  setBehaviour(behaviour: Behaviour): void;
  close(): Promise<void>;
}

/** A real node:http server on 127.0.0.1 port 0 whose answers the test scripts and whose requests it records. */
export async function startFakeTokenServer(initial: Behaviour): Promise<FakeTokenServer> {
  let behaviour = initial;
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded = {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(recorded);
      Promise.resolve(behaviour(recorded, res)).catch((error: unknown) => {
        if (!res.headersSent) reply(res, 500, { error: 'server_error', error_description: String(error) });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    tokenUrl: `${url}/oauth/token`,
    requests,
    setBehaviour: (next) => {
      behaviour = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Sends `body` as JSON (a string is sent as is, for malformed answers). */
export function reply(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

/** The client id and secret of a Basic header, form-decoded as RFC 6749 §2.3.1 requires. */
export function decodeBasic(
  header: string | undefined,
): { clientId: string; clientSecret: string } | undefined {
  const match = /^Basic (.+)$/.exec(header ?? '');
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const formDecode = (value: string) => decodeURIComponent(value.replace(/\+/g, '%20'));
  return {
    clientId: formDecode(decoded.slice(0, colon)),
    clientSecret: formDecode(decoded.slice(colon + 1)),
  };
}

/** A fresh random token, registered so the run fails if it is ever logged. */
export function mintToken(label: string): string {
  return registerSecret(label, `${label}-${randomBytes(24).toString('base64url')}`);
}

export interface GrantServerOptions {
  clientId: string;
  clientSecret: string;
  /** `expires_in` / `expiresIn` to send; undefined leaves it out. */
  expiresIn?: number | undefined;
  /** Whether refresh answers carry a new refresh token (rotation). */
  rotateRefreshTokens?: boolean;
}

export interface GrantServer {
  behaviour: Behaviour;
  /** Every access token issued, in order. */
  accessTokens: string[];
  /** Makes every refresh token issued so far invalid (`invalid_grant`), as an expiry or revocation would. */
  revokeRefreshTokens(): void;
}

/**
 * A token endpoint speaking the `json` (Auth0/publiq: snake_case) or `bloq` (camelCase `grantType`)
 * wire format: client credentials give an access and a refresh token, the refresh token renews the
 * access token, a wrong secret is `invalid_client` and an unknown refresh token `invalid_grant`.
 */
export function grantServer(format: 'json' | 'bloq', options: GrantServerOptions): GrantServer {
  const accessTokens: string[] = [];
  const refreshTokens = new Set<string>();
  const names =
    format === 'json'
      ? {
          grant: 'grant_type',
          cc: 'client_credentials',
          rt: 'refresh_token',
          id: 'client_id',
          secret: 'client_secret',
        }
      : {
          grant: 'grantType',
          cc: 'clientCredentials',
          rt: 'refreshToken',
          id: 'clientId',
          secret: 'clientSecret',
        };
  const issue = (withRefresh: boolean) => {
    const accessToken = mintToken(`${format}-access`);
    accessTokens.push(accessToken);
    const refreshToken = withRefresh ? mintToken(`${format}-refresh`) : undefined;
    if (refreshToken) refreshTokens.add(refreshToken);
    return format === 'json'
      ? {
          access_token: accessToken,
          token_type: 'Bearer',
          expires_in: options.expiresIn,
          refresh_token: refreshToken,
        }
      : { accessToken, expiresIn: options.expiresIn, refreshToken };
  };
  const behaviour: Behaviour = (req, res) => {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(req.body) as Record<string, unknown>;
    } catch {
      return reply(res, 400, { error: 'invalid_request', error_description: 'body is not JSON' });
    }
    if (body[names.grant] === names.cc) {
      if (body[names.id] !== options.clientId || body[names.secret] !== options.clientSecret) {
        return reply(res, 401, {
          error: 'invalid_client',
          error_description: 'client authentication failed',
        });
      }
      return reply(res, 200, issue(true));
    }
    if (body[names.grant] === names.rt) {
      const presented = body[names.rt];
      if (typeof presented !== 'string' || !refreshTokens.has(presented)) {
        return reply(res, 400, {
          error: 'invalid_grant',
          error_description: 'refresh token expired or revoked',
        });
      }
      if (options.rotateRefreshTokens) refreshTokens.delete(presented);
      return reply(res, 200, issue(options.rotateRefreshTokens ?? false));
    }
    return reply(res, 400, { error: 'unsupported_grant_type' });
  };
  return { behaviour, accessTokens, revokeRefreshTokens: () => refreshTokens.clear() };
}

/** An UpstreamConfig for a test upstream; every field can be overridden. */
export function upstreamConfigFor(
  tokenUrl: string | undefined,
  overrides: Partial<UpstreamConfig> = {},
): UpstreamConfig {
  return {
    issuer: undefined,
    tokenUrl,
    clientId: 'test-client',
    clientSecret: registerSecret('upstream client secret', `secret-${randomBytes(18).toString('base64url')}`),
    profile: 'rfc6749',
    authMethod: 'client_secret_basic',
    audience: undefined,
    scope: undefined,
    resource: undefined,
    apiUrl: undefined,
    defaultTtlSeconds: 300,
    timeoutMs: 2_000,
    apiTimeoutMs: 30_000,
    streamIdleMs: 60_000,
    maxReplayBytes: 65_536,
    ...overrides,
  };
}

/** Answers a token request with a fresh registered access token (and records it in `issued`). */
export function issueToken(
  issued: string[],
  extra: Record<string, unknown> = { expires_in: 3600 },
): Behaviour {
  return (_req, res) => {
    const token = registerSecret(
      'fake upstream access token',
      `upstream-at-${randomBytes(18).toString('base64url')}`,
    );
    issued.push(token);
    reply(res, 200, { access_token: token, token_type: 'Bearer', ...extra });
  };
}

/** Leaves a response hanging: headers only, no body, until the server closes. */
export function hang(_req: unknown, _res: ServerResponse): void {}
