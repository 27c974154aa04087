import { readFileSync } from 'node:fs';
import {
  OpenAPIRegistry,
  OpenApiGeneratorV31,
  type ResponseConfig,
  type RouteConfig,
} from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { type ErrorCode, errorCatalog } from '../errors.js';
import { tokenParameter } from './routes/introspection.js';
import {
  claimRequest,
  claimResponse,
  clientTokenResponse,
  healthResponse,
  introspectionResponse,
  jwksResponse,
  problemResponse,
  readinessResponse,
  upstreamTokenResponse,
} from './schemas.js';

/** An OpenAPI 3.1 document, as served at `/openapi.json`. */
export type OpenApiDocument = ReturnType<OpenApiGeneratorV31['generateDocument']>;

const problemType = 'application/problem+json';
const formType = 'application/x-www-form-urlencoded';
const errorCodes = Object.keys(errorCatalog) as [ErrorCode, ...ErrorCode[]];
const proxyMethods = ['get', 'head', 'post', 'put', 'patch', 'delete'] as const;

/** The configured upstream names, which the document lists where a route takes one. */
export interface OpenApiUpstreams {
  /** Every name, in the order of `UPSTREAMS`. */
  names: [string, ...string[]];
  /** The names with an API behind `/api/proxy`. */
  proxied: string[];
  /** `UPSTREAMS` is set: proxy paths carry the name. */
  named: boolean;
}

const singleDefault: OpenApiUpstreams = { names: ['default'], proxied: ['default'], named: false };

/**
 * The OpenAPI 3.1 description of every route, generated from the zod schemas the routes parse and answer
 * with (`schemas.ts`, `tokenParameter`), so the document and the code cannot drift apart.
 */
export function createOpenApiDocument(upstreams: OpenApiUpstreams = singleDefault): OpenApiDocument {
  const upstreamList = upstreams.names.join(', ');
  const registry = new OpenAPIRegistry();
  const problem = problemResponse
    .extend({ code: z.enum(errorCodes).meta({ description: 'Stable error code; see docs/routes.md' }) })
    .meta({ id: 'Problem', description: 'RFC 9457 problem details with a stable `code`' });
  const schemas = {
    clientToken: clientTokenResponse.meta({ id: 'ClientTokenResponse' }),
    claimRequest: claimRequest.meta({ id: 'ClaimRequest' }),
    claim: claimResponse.meta({ id: 'ClaimResponse' }),
    upstreamToken: upstreamTokenResponse.meta({ id: 'UpstreamTokenResponse' }),
    tokenParameter: tokenParameter.meta({ id: 'TokenParameter' }),
    introspection: introspectionResponse.meta({ id: 'IntrospectionResponse' }),
    jwks: jwksResponse.meta({ id: 'JsonWebKeySet' }),
    health: healthResponse.meta({ id: 'HealthResponse' }),
    readiness: readinessResponse.meta({ id: 'ReadinessResponse' }),
  };
  const apiKey = registry.registerComponent('securitySchemes', 'brokerApiKey', {
    type: 'http',
    scheme: 'bearer',
    description: 'A broker API key (BROKER_API_KEYS), for backends and other containers of the pod',
  });
  const clientToken = registry.registerComponent('securitySchemes', 'clientToken', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A client token from /api/client-token or /api/auth/claim',
  });
  const clientTokenHeader = registry.registerComponent('securitySchemes', 'clientTokenHeader', {
    type: 'apiKey',
    in: 'header',
    name: 'x-client-token',
    description: 'The client token, for pages whose Authorization header goes to the API',
  });
  const dpopToken = registry.registerComponent('securitySchemes', 'dpopClientToken', {
    type: 'http',
    scheme: 'DPoP',
    description:
      'A DPoP-bound client token (`Authorization: DPoP <token>`) with a `DPoP` proof header (RFC 9449 §7)',
  });
  const withApiKey = [{ [apiKey.name]: [] }];

  /** Problem answers grouped by status, each listing its codes; `[code, status]` where a route differs from the catalog. */
  function problems(...codes: (ErrorCode | [ErrorCode, number])[]): Record<string, ResponseConfig> {
    const byStatus = new Map<number, ErrorCode[]>();
    for (const entry of codes) {
      const [code, status] = typeof entry === 'string' ? [entry, errorCatalog[entry].status] : entry;
      byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
    }
    return Object.fromEntries(
      [...byStatus].map(([status, list]) => [
        String(status),
        {
          description: list.map((code) => `\`${code}\`: ${errorCatalog[code].title}`).join('; '),
          content: { [problemType]: { schema: problem } },
        },
      ]),
    );
  }
  const json = (schema: z.ZodType, description: string): ResponseConfig => ({
    description,
    content: { 'application/json': { schema } },
  });
  const route = (config: RouteConfig) => registry.registerPath(config);

  for (const method of ['get', 'post'] as const) {
    route({
      method,
      path: '/api/client-token',
      summary: 'A client token for the calling page (Miso-style)',
      description:
        'The origin comes from `Origin` (else `Referer`) and must be in ALLOWED_ORIGINS; the token is bound to it and to the caller IP, and to the key of a `DPoP` proof when one is sent (RFC 9449 §5). GET and POST behave the same.',
      request: {
        headers: z.object({
          dpop: z.string().optional().meta({ description: 'RFC 9449 DPoP proof for this request' }),
          attestation: z.string().optional().meta({
            description:
              'The proof CLIENT_TOKEN_ATTESTATION asks for: a solved `pow` challenge (base64 ALTCHA payload), a captcha response token or an App Check token',
          }),
        }),
        query: z.object({
          upstreams: z
            .string()
            .optional()
            .meta({
              description: `Comma-separated upstreams the token opens, some of: ${upstreamList}. By default all the origin may reach.`,
            }),
        }),
      },
      responses: {
        200: json(schemas.clientToken, 'A client token (`tokenType` is `DPoP` when bound to a proof key)'),
        ...problems(
          'invalid_request',
          'origin_required',
          ['invalid_dpop_proof', 400],
          'attestation_required',
          'attestation_failed',
          'origin_not_allowed',
          'upstream_not_allowed',
          'rate_limited',
        ),
      },
    });
    route({
      method,
      path: '/api/client-token/challenge',
      summary: 'What a proof needs, with CLIENT_TOKEN_ATTESTATION set (no route without it)',
      description:
        'With `pow`, a fresh ALTCHA v2 challenge (`{parameters, signature}`) bound to the calling origin; with `turnstile`, `hcaptcha` or `recaptcha`, `{provider, siteKey}`. GET and POST behave the same.',
      responses: {
        200: json(z.looseObject({}), 'A `pow` challenge, or the provider and its site key'),
        ...problems('origin_required', 'origin_not_allowed', 'rate_limited'),
      },
    });
  }
  route({
    method: 'post',
    path: '/api/auth/claim',
    summary: 'A client token for an origin (and IP) of the backend’s choosing (Trefle-compatible)',
    description: `The API key comes as \`Authorization: Bearer\` (preferred) or as \`token\`; fields may be sent as query parameters, JSON or a form. \`upstreams\` names some of: ${upstreamList}.`,
    security: [...withApiKey, {}],
    request: {
      query: schemas.claimRequest,
      body: {
        required: false,
        content: {
          'application/json': { schema: schemas.claimRequest },
          [formType]: { schema: schemas.claimRequest },
        },
      },
    },
    responses: {
      200: json(schemas.claim, 'A client token; `expiration` is MM-DD-YYYY HH:mm in UTC'),
      ...problems(
        'invalid_request',
        'origin_required',
        'invalid_api_key',
        'upstream_not_allowed',
        'payload_too_large',
        'unsupported_media_type',
        'rate_limited',
      ),
    },
  });
  route({
    method: 'get',
    path: '/api/upstream-token',
    summary: 'The cached upstream access token, for another container of the pod',
    security: withApiKey,
    request: {
      query: z.object({
        upstream: z
          .enum(upstreams.names)
          .optional()
          .meta({ description: 'Which upstream; may be left out when only one is configured' }),
      }),
    },
    responses: {
      200: json(schemas.upstreamToken, 'RFC 6749 §5.1 token answer'),
      ...problems(
        'invalid_request',
        'invalid_api_key',
        'not_found',
        'rate_limited',
        'upstream_rejected',
        'upstream_unavailable',
      ),
    },
  });
  const tokenBody = {
    required: true,
    content: {
      [formType]: { schema: schemas.tokenParameter },
      'application/json': { schema: schemas.tokenParameter },
    },
  };
  route({
    method: 'post',
    path: '/api/client-token/introspect',
    summary: 'RFC 7662 introspection of a client token',
    security: withApiKey,
    request: { body: tokenBody },
    responses: {
      200: json(
        schemas.introspection,
        '`{"active":false}` for any token not currently valid, else its claims',
      ),
      ...problems(
        'invalid_request',
        'invalid_api_key',
        'payload_too_large',
        'unsupported_media_type',
        'rate_limited',
      ),
    },
  });
  route({
    method: 'post',
    path: '/api/client-token/revoke',
    summary: 'RFC 7009 revocation of a client token',
    security: withApiKey,
    request: { body: tokenBody },
    responses: {
      200: { description: 'Revoked, or not a valid token (RFC 7009 §2.2 answers 200 either way); no body' },
      ...problems(
        'invalid_request',
        'invalid_api_key',
        'payload_too_large',
        'unsupported_media_type',
        'rate_limited',
      ),
    },
  });
  const [firstProxied, ...moreProxied] = upstreams.proxied;
  const proxiedName = firstProxied === undefined ? undefined : z.enum([firstProxied, ...moreProxied]);
  for (const method of proxiedName ? proxyMethods : []) {
    route({
      method,
      path: upstreams.named ? '/api/proxy/{upstream}/{path}' : '/api/proxy/{path}',
      summary: upstreams.named
        ? 'Forwards to UPSTREAM_<NAME>_API_URL with that upstream’s access token'
        : 'Forwards to UPSTREAM_API_URL with the upstream access token',
      description:
        '`path` may span several segments. The body and the answer are streamed; a 401 from the API renews the upstream token and retries once. The API’s own answers pass through as they are. The client token must open the upstream (its `upstreams` claim), else `upstream_not_allowed`; a method and path that no rule of `UPSTREAM_[<NAME>_]ALLOW` opens is `path_not_allowed`. With `Accept: text/event-stream` an event stream is relayed as it arrives. A GET with `Upgrade: websocket` opens a WebSocket to the API, the client token offered as the subprotocol `token-broker.bearer.<token>` (docs/websockets.md); a refused handshake gets these problem answers, and `websocket_refused` when the API refuses it.',
      security: [{ [clientToken.name]: [] }, { [clientTokenHeader.name]: [] }, { [dpopToken.name]: [] }],
      request: {
        params: upstreams.named
          ? z.object({
              upstream: (proxiedName ?? z.string()).meta({
                description: 'A configured upstream name; any other answers 404 not_found',
              }),
              path: z.string(),
            })
          : z.object({ path: z.string() }),
      },
      responses: {
        default: { description: 'The API’s answer', content: { '*/*': { schema: {} } } },
        ...problems(
          'invalid_request',
          'invalid_client_token',
          'invalid_dpop_proof',
          'token_revoked',
          'origin_mismatch',
          'ip_mismatch',
          'upstream_not_allowed',
          'path_not_allowed',
          'not_found',
          'method_not_allowed',
          'token_budget_exhausted',
          'call_quota_exhausted',
          'upstream_rejected',
          'upstream_unavailable',
          'upstream_timeout',
          ...(method === 'get' ? (['websocket_refused'] as const) : []),
        ),
      },
    });
  }
  route({
    method: 'get',
    path: '/.well-known/jwks.json',
    summary: 'The public keys that verify client tokens',
    responses: {
      200: {
        description: 'RFC 7517 JWK Set',
        content: { 'application/jwk-set+json': { schema: schemas.jwks } },
      },
    },
  });
  route({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness',
    responses: { 200: json(schemas.health, 'The process answers') },
  });
  route({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: an upstream token is held or can be obtained',
    responses: {
      200: json(schemas.readiness, 'Ready'),
      503: json(schemas.readiness, 'Not ready, with the refusal’s code'),
    },
  });
  route({
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (on METRICS_PORT instead when that is set)',
    security: [{}, ...withApiKey],
    responses: {
      200: {
        description: 'Prometheus text exposition format',
        content: { 'text/plain': { schema: z.string() } },
      },
      ...problems('invalid_api_key'),
    },
  });
  route({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    responses: { 200: json(z.looseObject({ openapi: z.string() }), 'OpenAPI 3.1') },
  });

  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'token-broker',
      version,
      description:
        'Keeps OAuth2 client secrets and upstream access tokens on the server; hands browsers short-lived JWTs bound to their origin and IP.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
  });
}
