import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import type { Logger } from '../telemetry/logger.js';

export interface DemoApiOptions {
  /** The dev authorization server's issuer; tokens must carry it as `iss`. */
  issuer: string;
  /** Where its signing keys are published. */
  jwksUri: string;
  /** The resource indicator the tokens must name in `aud`. */
  audience: string;
  logger?: Logger;
  port?: number;
}

export interface DemoApi {
  /** Base URL, with a trailing slash. */
  url: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

/**
 * A tiny protected API on 127.0.0.1 that accepts only the dev authorization server's JWT access tokens
 * (signature, `iss`, `aud`, `exp` and the `at+jwt` type checked): `GET /hello` answers who called.
 * @see https://www.rfc-editor.org/rfc/rfc9068#section-4
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 */
export async function startDemoApi(options: DemoApiOptions): Promise<DemoApi> {
  const { issuer, audience } = options;
  const logger = options.logger?.child({ component: 'demo-api' });
  const keys = createRemoteJWKSet(new URL(options.jwksUri));

  async function authenticate(authorization: string | undefined): Promise<JWTPayload | undefined> {
    const match = /^Bearer ([\w.~+/-]+=*)$/i.exec(authorization ?? '');
    if (!match?.[1]) return undefined;
    try {
      const { payload } = await jwtVerify(match[1], keys, { issuer, audience, typ: 'at+jwt' });
      return payload;
    } catch (error) {
      logger?.debug({ reason: (error as { code?: string }).code ?? 'error' }, 'demo API refused a token');
      return undefined;
    }
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://demo.invalid').pathname;
    if (path !== '/hello') return send(res, 404, { error: 'not_found' });
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(res, 405, { error: 'method_not_allowed' }, { allow: 'GET' });
    authenticate(req.headers.authorization).then((payload) => {
      if (!payload) {
        return send(
          res,
          401,
          { error: 'invalid_token' },
          { 'www-authenticate': 'Bearer error="invalid_token"' },
        );
      }
      send(res, 200, {
        message: 'Hello from the demo API',
        time: new Date().toISOString(),
        client: typeof payload.client_id === 'string' ? payload.client_id : payload.sub,
        scope: typeof payload.scope === 'string' ? payload.scope : undefined,
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  logger?.debug({ url }, 'demo API listening');

  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
