import type { RequestHandler } from 'express';
import type { JSONWebKeySet } from 'jose';

/**
 * `GET /.well-known/jwks.json`: the public halves of the signing keys, for any verifier. Public by
 * nature, so any origin may read it; cached briefly so rotation propagates within minutes.
 */
export function jwksHandler({ publicJwks }: { publicJwks: () => JSONWebKeySet }): RequestHandler {
  // Serialised once per key set: a reload that changes the keys changes the object.
  let published: JSONWebKeySet | undefined;
  let body = '';
  return (_req, res) => {
    const current = publicJwks();
    if (current !== published) {
      published = current;
      body = JSON.stringify(current);
    }
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.type('application/jwk-set+json').send(body);
  };
}
