import { Router } from 'express';
import { createOpenApiDocument } from '../openapi.js';

/** `GET /openapi.json`: the OpenAPI 3.1 description of the broker, generated once per app. */
export function openApiRoute(): Router {
  const router = Router();
  const body = JSON.stringify(createOpenApiDocument());
  router.get('/openapi.json', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type('application/json').send(body);
  });
  return router;
}
