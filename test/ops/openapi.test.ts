import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCatalog } from '../../src/errors.js';
import { createOpenApiDocument } from '../../src/http/openapi.js';
import { type ApiServer, startApiServer } from '../support/apiServers.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';

// ajv is what @seriousme/openapi-schema-validator validates with; its format plugin is CommonJS only.
const addFormats = createRequire(import.meta.url)('ajv-formats') as (ajv: Ajv2020) => void;

const allowed = 'https://app.example.com';
const document = createOpenApiDocument();
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

interface MediaType {
  schema?: Record<string, unknown>;
}
interface ResponseObject {
  content?: Record<string, MediaType>;
}
type Operations = Record<string, { responses: Record<string, ResponseObject> }>;

const operations = () => document.paths as unknown as Record<string, Operations>;
const exercised = new Set<string>();

/**
 * Checks a real answer against the document: the status is documented for the operation (or a
 * `default` covers it), the content type is one the operation lists, and the body validates against its
 * JSON Schema (OpenAPI 3.1 schemas are JSON Schema 2020-12; `$ref`s resolve into `components`).
 */
function expectDocumented(method: string, path: string, res: request.Response): void {
  exercised.add(`${method} ${path}`);
  const operation = operations()[path]?.[method];
  expect(operation, `${method} ${path} is documented`).toBeDefined();
  const response = operation?.responses[String(res.status)] ?? operation?.responses.default;
  expect(response, `${method} ${path} documents status ${res.status}`).toBeDefined();
  if (!response?.content) {
    expect(res.text ?? '', `${method} ${path} ${res.status} has no body`).toBe('');
    return;
  }
  if (method === 'head') return;
  const type = String(res.headers['content-type'] ?? '').split(';')[0] ?? '';
  const media = response.content[type] ?? response.content['*/*'];
  expect(media, `${method} ${path} ${res.status} documents ${type}`).toBeDefined();
  if (!media?.schema) return;
  const body: unknown = /json/.test(type) ? JSON.parse(res.text) : res.text;
  const validate = ajv.compile({ ...media.schema, components: document.components });
  const valid = validate(body);
  expect(validate.errors ?? [], `${method} ${path} ${res.status} body matches its schema`).toEqual([]);
  expect(valid).toBe(true);
}

function expectProblem(method: string, path: string, res: request.Response, code: keyof typeof errorCatalog) {
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body.code).toBe(code);
  expect(res.status).toBe(errorCatalog[code].status);
  expectDocumented(method, path, res);
}

describe('the OpenAPI document', () => {
  it('when validated against the OpenAPI 3.1 schema, then it is valid', async () => {
    const validator = new Validator();
    const result = await validator.validate(document as unknown as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('when read, then every route of the design is described, with both security schemes', () => {
    expect(Object.keys(document.paths ?? {}).sort()).toEqual(
      [
        '/.well-known/jwks.json',
        '/api/auth/claim',
        '/api/client-token',
        '/api/client-token/challenge',
        '/api/client-token/introspect',
        '/api/client-token/revoke',
        '/api/proxy/{path}',
        '/api/upstream-token',
        '/healthz',
        '/metrics',
        '/openapi.json',
        '/readyz',
      ].sort(),
    );
    expect(Object.keys(document.components?.securitySchemes ?? {}).sort()).toEqual([
      'brokerApiKey',
      'clientToken',
      'clientTokenHeader',
      'dpopClientToken',
    ]);
  });

  it('when every error answer is listed, then each is problem+json with the Problem schema', () => {
    for (const [path, ops] of Object.entries(operations())) {
      for (const [method, operation] of Object.entries(ops)) {
        for (const [status, response] of Object.entries(operation.responses)) {
          if (status === 'default' || Number(status) < 400 || path === '/readyz') continue;
          expect(Object.keys(response.content ?? {}), `${method} ${path} ${status}`).toEqual([
            'application/problem+json',
          ]);
          expect(response.content?.['application/problem+json']?.schema).toEqual({
            $ref: '#/components/schemas/Problem',
          });
        }
      }
    }
  });
});

describe('real answers match the document', () => {
  let auth: TestAuthServer;
  let api: ApiServer;
  let broker: OidcBroker;
  let refused: OidcBroker;
  const bearer = () => `Bearer ${broker.apiKey}`;
  const mint = async () => {
    const res = await request(broker.url).post('/api/client-token').set('Origin', allowed);
    expectDocumented('post', '/api/client-token', res);
    return registerSecret('client token', res.body.token as string);
  };

  beforeAll(async () => {
    auth = await startTestAuthServer();
    api = await startApiServer((req, res, _record, body) => {
      void body.then(() => {
        if (req.url?.startsWith('/text')) {
          res.writeHead(201, { 'content-type': 'text/plain' });
          res.end('created');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(req.method === 'HEAD' ? undefined : '{"ok":true}');
      });
    });
    broker = await startBroker({
      env: { UPSTREAM_API_URL: api.origin, MAX_BODY_BYTES: '1024' },
      upstream: auth,
    });
    const wrong = registerSecret('wrong client secret', randomBytes(24).toString('base64url'));
    refused = await startBroker({ env: { UPSTREAM_CLIENT_SECRET: wrong }, upstream: auth });
  });
  afterAll(async () => {
    await broker?.close();
    await refused?.close();
    await api?.close();
    await auth?.close();
  });

  it('when /openapi.json is fetched, then it is the generated document', async () => {
    const res = await request(broker.url).get('/openapi.json');
    expectDocumented('get', '/openapi.json', res);
    expect(res.body).toEqual(JSON.parse(JSON.stringify(document)));
  });

  it('when /api/client-token answers, then tokens and refusals match their schemas', async () => {
    await mint();
    expectDocumented(
      'get',
      '/api/client-token',
      await request(broker.url).get('/api/client-token').set('Origin', allowed),
    );
    expectProblem(
      'get',
      '/api/client-token',
      await request(broker.url).get('/api/client-token'),
      'origin_required',
    );
    const evil = await request(broker.url).post('/api/client-token').set('Origin', 'https://evil.example');
    expectProblem('post', '/api/client-token', evil, 'origin_not_allowed');
  });

  it('when attestation is on, then the challenge route and the proof refusals match their schemas', async () => {
    const attested = await startBroker({ env: { CLIENT_TOKEN_ATTESTATION: 'pow' }, upstream: auth });
    for (const method of ['get', 'post'] as const) {
      expectDocumented(
        method,
        '/api/client-token/challenge',
        await request(attested.url)[method]('/api/client-token/challenge').set('Origin', allowed),
      );
    }
    const unproved = await request(attested.url).post('/api/client-token').set('Origin', allowed);
    expectProblem('post', '/api/client-token', unproved, 'attestation_required');
    const forged = await request(attested.url)
      .post('/api/client-token')
      .set('Origin', allowed)
      .set('Attestation', 'forged');
    expectProblem('post', '/api/client-token', forged, 'attestation_failed');
  });

  it('when /api/auth/claim answers, then JSON, form and query claims and every refusal match their schemas', async () => {
    const path = '/api/auth/claim';
    const json = await request(broker.url)
      .post(path)
      .set('Authorization', bearer())
      .send({ origin: allowed, ip: '203.0.113.7' });
    expectDocumented('post', path, json);
    registerSecret('claimed token', json.body.token as string);
    const form = await request(broker.url)
      .post(path)
      .type('form')
      .send({ token: broker.apiKey, origin: allowed });
    expectDocumented('post', path, form);
    registerSecret('claimed token', form.body.token as string);
    const query = await request(broker.url).post(path).query({ token: broker.apiKey, origin: allowed });
    expectDocumented('post', path, query);
    registerSecret('claimed token', query.body.token as string);

    expectProblem(
      'post',
      path,
      await request(broker.url).post(path).send({ origin: allowed }),
      'invalid_api_key',
    );
    expectProblem(
      'post',
      path,
      await request(broker.url).post(path).set('Authorization', bearer()).send({}),
      'origin_required',
    );
    const badIp = await request(broker.url)
      .post(path)
      .set('Authorization', bearer())
      .send({ origin: allowed, ip: 'nope' });
    expectProblem('post', path, badIp, 'invalid_request');
    const big = await request(broker.url)
      .post(path)
      .set('Authorization', bearer())
      .send({ origin: allowed, pad: 'x'.repeat(2048) });
    expectProblem('post', path, big, 'payload_too_large');
    const charset = await request(broker.url)
      .post(path)
      .set('Authorization', bearer())
      .set('content-type', 'application/json; charset=latin1')
      .send('{"origin":"https://app.example.com"}');
    expectProblem('post', path, charset, 'unsupported_media_type');
  });

  it('when /api/upstream-token answers, then the token, a missing key and a refused upstream match their schemas', async () => {
    const path = '/api/upstream-token';
    const ok = await request(broker.url).get(path).set('Authorization', bearer());
    expectDocumented('get', path, ok);
    registerSecret('upstream token', ok.body.access_token as string);
    expectProblem('get', path, await request(broker.url).get(path), 'invalid_api_key');
    const rejected = await request(refused.url).get(path).set('Authorization', `Bearer ${refused.apiKey}`);
    expectProblem('get', path, rejected, 'upstream_rejected');
  });

  it('when introspection and revocation answer, then active, inactive, revoked and refused answers match their schemas', async () => {
    const token = await mint();
    const introspect = '/api/client-token/introspect';
    const revoke = '/api/client-token/revoke';
    const active = await request(broker.url)
      .post(introspect)
      .set('Authorization', bearer())
      .type('form')
      .send({ token });
    expectDocumented('post', introspect, active);
    expect(active.body).toMatchObject({ active: true, origin: allowed });
    const inactive = await request(broker.url)
      .post(introspect)
      .set('Authorization', bearer())
      .send({ token: 'not.a.token' });
    expectDocumented('post', introspect, inactive);
    expect(inactive.body).toEqual({ active: false });
    expectProblem(
      'post',
      introspect,
      await request(broker.url).post(introspect).send({ token }),
      'invalid_api_key',
    );
    expectProblem(
      'post',
      introspect,
      await request(broker.url).post(introspect).set('Authorization', bearer()).send({}),
      'invalid_request',
    );

    const revoked = await request(broker.url)
      .post(revoke)
      .set('Authorization', bearer())
      .type('form')
      .send({ token });
    expectDocumented('post', revoke, revoked);
    expect(revoked.status).toBe(200);
    const after = await request(broker.url).post(introspect).set('Authorization', bearer()).send({ token });
    expect(after.body).toEqual({ active: false });
    expectProblem('post', revoke, await request(broker.url).post(revoke).send({ token }), 'invalid_api_key');
  });

  it('when /api/proxy/* answers, then forwarded answers and token refusals match the document', async () => {
    const token = await mint();
    const path = '/api/proxy/{path}';
    for (const method of ['get', 'head', 'post', 'put', 'patch', 'delete'] as const) {
      const res = await request(broker.url)
        [method]('/api/proxy/things/1')
        .set('Origin', allowed)
        .set('x-client-token', token);
      expect(res.status).toBe(200);
      expectDocumented(method, path, res);
    }
    const text = await request(broker.url)
      .post('/api/proxy/text')
      .set('Origin', allowed)
      .set('Authorization', `Bearer ${token}`)
      .send('hi');
    expect(text.status).toBe(201);
    expectDocumented('post', path, text);
    expectProblem(
      'get',
      path,
      await request(broker.url).get('/api/proxy/things').set('Origin', allowed),
      'invalid_client_token',
    );
    const elsewhere = await request(broker.url)
      .get('/api/proxy/things')
      .set('Origin', 'https://other.example.com')
      .set('Authorization', `Bearer ${token}`);
    expectProblem('get', path, elsewhere, 'origin_mismatch');
  });

  it('when the platform routes answer, then jwks, probes and metrics match their schemas', async () => {
    expectDocumented(
      'get',
      '/.well-known/jwks.json',
      await request(broker.url).get('/.well-known/jwks.json'),
    );
    expectDocumented('get', '/healthz', await request(broker.url).get('/healthz'));
    const ready = await request(broker.url).get('/readyz');
    expect(ready.status).toBe(200);
    expectDocumented('get', '/readyz', ready);
    const notReady = await request(refused.url).get('/readyz');
    expect(notReady.status).toBe(503);
    expectDocumented('get', '/readyz', notReady);
    expectDocumented('get', '/metrics', await request(broker.url).get('/metrics'));
  });

  it('when the suite is over, then every documented operation was checked against a real answer', () => {
    const documented = Object.entries(operations()).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method} ${path}`),
    );
    expect([...exercised].sort()).toEqual(documented.sort());
  });
});
