import type { RequestHandler } from 'express';
import type { Upstreams } from '../../upstream/registry.js';
import { createOpenApiDocument } from '../openapi.js';

/** `GET /openapi.json`: the OpenAPI 3.1 description of the broker, generated once per app. */
export function openApiHandler(upstreams: Upstreams): RequestHandler {
  const [first, ...rest] = upstreams.list.map((upstream) => upstream.name);
  const body = JSON.stringify(
    createOpenApiDocument({
      names: [first ?? 'default', ...rest],
      proxied: upstreams.list.filter((upstream) => upstream.proxy).map((upstream) => upstream.name),
      named: upstreams.named,
    }),
  );
  return (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type('application/json').send(body);
  };
}
