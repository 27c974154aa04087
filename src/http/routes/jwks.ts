import { Router } from 'express';
import type { JSONWebKeySet } from 'jose';

/**
 * `GET /.well-known/jwks.json`: the public halves of the signing keys, for any verifier. Public by
 * nature, so any origin may read it; cached briefly so rotation propagates within minutes.
 */
export function jwksRoute({ publicJwks }: { publicJwks: JSONWebKeySet }): Router {
  const router = Router();
  const body = JSON.stringify(publicJwks);
  router.get('/.well-known/jwks.json', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.type('application/jwk-set+json').send(body);
  });
  return router;
}
