import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificateThumbprint,
  loadTlsClientIdentity,
  type TlsClientIdentity,
} from '../../src/upstream/tlsClientIdentity.js';
import { createTlsDispatchers } from '../../src/upstream/tlsDispatchers.js';
import { createTestAuthority, type TestAuthority } from '../support/certificates.js';
import { missing } from '../support/requires.js';
import { waitFor } from '../support/waiting.js';

describe.skipIf(await missing('openssl'))('one dispatcher per client-certificate generation', () => {
  let pki: TestAuthority;
  let server: Server;
  let origin: string;
  const identities: TlsClientIdentity[] = [];
  /** `/held` answers once released: a request in flight while its certificate is rotated out. */
  let release: () => void = () => {};
  let heldArrived = false;

  beforeAll(async () => {
    pki = await createTestAuthority();
    const tls = await pki.issue('server', { subject: '/CN=127.0.0.1', altNames: ['IP:127.0.0.1'] });
    for (const name of ['first', 'second', 'third']) {
      const issued = await pki.issue(name, { subject: `/CN=${name}` });
      const identity = loadTlsClientIdentity(
        {
          cert: { setting: 'UPSTREAM_TLS_CERT_FILE', path: issued.certPath },
          key: { setting: 'UPSTREAM_TLS_KEY_FILE', path: issued.keyPath },
          ca: { setting: 'UPSTREAM_TLS_CA_FILE', path: pki.ca.certPath },
        },
        (path) => readFileSync(path, 'utf8'),
      );
      if (Array.isArray(identity)) throw new Error(identity.join('; '));
      identities.push(identity);
    }
    server = createServer(
      { cert: tls.cert, key: tls.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerX509Certificate();
        const answer = () => res.end(peer ? certificateThumbprint(peer) : 'none');
        if (req.url !== '/held') return answer();
        heldArrived = true;
        release = answer;
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await pki?.remove();
  });

  it('when the certificate rotates twice while a request of the first is in flight, then each request presents its own, the first finishes and its dispatcher closes', async () => {
    const [first, second, third] = identities as [TlsClientIdentity, TlsClientIdentity, TlsClientIdentity];
    const dispatchers = createTlsDispatchers(
      (identity) => new Agent({ connect: { secureContext: identity.secureContext } }),
    );
    const presented = async (identity: TlsClientIdentity, path = '/') =>
      (await request(`${origin}${path}`, { dispatcher: dispatchers.for(identity) })).body.text();

    const oldest = dispatchers.for(first);
    const held = presented(first, '/held');
    await waitFor(() => heldArrived);
    expect(await presented(second)).toBe(second.thumbprint);
    // The newest and the one before stay open: the first is still the same dispatcher.
    expect(dispatchers.for(first)).toBe(oldest);
    expect(await presented(third)).toBe(third.thumbprint);
    expect(oldest.closed).toBe(true);
    expect(oldest.destroyed).toBe(false);

    release();
    expect(await held).toBe(first.thumbprint);
    await waitFor(() => oldest.destroyed);
    await dispatchers.close();
  });
});
