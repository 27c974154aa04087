import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, jwtVerify } from 'jose';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { buildTokenRequest } from '../../src/upstream/profiles.js';
import { certificateThumbprint } from '../../src/upstream/tlsClientIdentity.js';
import { type ApiServer, startApiServer } from '../support/apiServers.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { createTestAuthority, type IssuedCertificate, type TestAuthority } from '../support/certificates.js';
import { configProblems } from '../support/expectErrors.js';
import { registerSecret } from '../support/logs.js';
import { startTestAuthServer, type TestAuthServer } from '../support/oidcProvider.js';
import { missing } from '../support/requires.js';
import { createSecretVolume } from '../support/secretVolume.js';
import { waitFor } from '../support/waiting.js';

const thumbprintOf = (pem: string) => certificateThumbprint(new X509Certificate(pem));

/** A client registration of the client credentials grant for `api:read`, tokens bound to the certificate. */
const registration = (clientId: string, metadata: Record<string, unknown>) => ({
  client_id: clientId,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'api:read',
  tls_client_certificate_bound_access_tokens: true,
  ...metadata,
});

/** RFC 8705 §2.2: a self-signed certificate is registered as a JWK of its key carrying it in `x5c`. */
const jwkOf = ({ cert }: IssuedCertificate) => {
  const certificate = new X509Certificate(cert);
  return {
    ...certificate.publicKey.export({ format: 'jwk' }),
    x5c: [certificate.raw.toString('base64')],
  };
};

describe.skipIf(await missing('openssl'))(
  'mutual-TLS client authentication (RFC 8705) against oidc-provider',
  () => {
    let pki: TestAuthority;
    let auth: TestAuthServer;
    let api: ApiServer;
    const certs: Record<'caIssued' | 'caIssuedNext' | 'selfSigned' | 'selfSignedNext', IssuedCertificate> =
      {} as never;
    /** The `x5t#S256` of the certificate each API request came with, and of the token's `cnf`. */
    const apiSaw: { presented: string | undefined; bound: string | undefined }[] = [];

    beforeAll(async () => {
      pki = await createTestAuthority();
      const server = await pki.issue('server', { subject: '/CN=127.0.0.1', altNames: ['IP:127.0.0.1'] });
      const subject = '/O=Token Broker Tests/CN=broker-mtls';
      certs.caIssued = await pki.issue('client', { subject, altNames: ['DNS:broker.internal'] });
      certs.caIssuedNext = await pki.issue('client-next', { subject, altNames: ['DNS:broker.internal'] });
      certs.selfSigned = await pki.issue('self', { subject: '/CN=broker-self', selfSigned: true });
      certs.selfSignedNext = await pki.issue('self-next', { subject: '/CN=broker-self', selfSigned: true });
      for (const { key } of Object.values(certs)) registerSecret('client certificate key', key);
      const tls = { cert: server.cert, key: server.key, ca: pki.ca.cert };
      auth = await startTestAuthServer({
        tls,
        clients: [
          registration('broker-dn', {
            token_endpoint_auth_method: 'tls_client_auth',
            tls_client_auth_subject_dn: 'CN=broker-mtls,O=Token Broker Tests',
          }),
          registration('broker-san', {
            token_endpoint_auth_method: 'tls_client_auth',
            tls_client_auth_san_dns: 'broker.internal',
          }),
          registration('broker-self', {
            token_endpoint_auth_method: 'self_signed_tls_client_auth',
            jwks: { keys: [jwkOf(certs.selfSigned), jwkOf(certs.selfSignedNext)] },
          }),
        ],
      });
      const jwksAnswer = await request(auth.jwksUri, {
        dispatcher: new Agent({ connect: { ca: pki.ca.cert } }),
      });
      const keys = createLocalJWKSet((await jwksAnswer.body.json()) as JSONWebKeySet);
      // The resource server of RFC 8705 §3: a token is good only with the certificate its `cnf` names.
      api = await startApiServer(
        (req, res, _record, body) => {
          void body.then(async () => {
            const peer = (req.socket as TLSSocket).getPeerX509Certificate();
            const presented = peer && certificateThumbprint(peer);
            const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
            let bound: string | undefined;
            try {
              const { payload } = await jwtVerify(token, keys, {
                issuer: auth.issuer,
                audience: auth.resource,
              });
              bound = (payload.cnf as { 'x5t#S256'?: string } | undefined)?.['x5t#S256'];
            } catch {
              // Not a token of this server: bound stays undefined and the call is refused below.
            }
            apiSaw.push({ presented, bound });
            const ok = bound !== undefined && bound === presented;
            res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
            res.end(JSON.stringify(ok ? { hello: 'bound caller' } : { error: 'invalid_token' }));
          });
        },
        { ...tls, requestCert: true, rejectUnauthorized: false },
      );
    });

    afterAll(async () => {
      await api?.close();
      await auth?.close();
      await pki?.remove();
    });

    async function mtlsBroker(clientId: string, method: string, files: { cert: string; key: string }) {
      const volume = createSecretVolume({
        'tls.crt': files.cert,
        'tls.key': files.key,
        'ca.crt': pki.ca.cert,
      });
      onTestFinished(volume.remove);
      const broker = await startBroker({
        upstream: auth,
        api,
        reload: { debounceMs: 50 },
        env: {
          UPSTREAM_CLIENT_ID: clientId,
          UPSTREAM_CLIENT_SECRET: '',
          UPSTREAM_AUTH_METHOD: method,
          UPSTREAM_TLS_CERT_FILE: volume.path('tls.crt'),
          UPSTREAM_TLS_KEY_FILE: volume.path('tls.key'),
          UPSTREAM_TLS_CA_FILE: volume.path('ca.crt'),
        },
      });
      const cache = () => broker.broker.upstreams.get('default')?.cache;
      /** One proxied call: its status, the refusal's code, and what the API saw of it if it got that far. */
      const proxy = async () => {
        const seen = apiSaw.length;
        const token = await broker.clientToken(appOrigin);
        const answer = await broker.request({
          path: '/api/proxy/hello',
          headers: { authorization: `Bearer ${token}`, origin: appOrigin },
        });
        const code = answer.status === 200 ? undefined : (JSON.parse(answer.body) as { code?: string }).code;
        return { status: answer.status, ...(code ? { code } : {}), ...apiSaw.slice(seen).at(-1) };
      };
      /** Swaps the mounted certificate and key, and waits for the reload that applies them (the folder is watched). */
      const rotate = async (next: { cert: string; key: string }) => {
        const generation = broker.broker.reloader?.status().generation ?? 0;
        volume.swap({ 'tls.crt': next.cert, 'tls.key': next.key, 'ca.crt': pki.ca.cert });
        await waitFor(() => (broker.broker.reloader?.status().generation ?? 0) > generation);
      };
      const renew = async () => {
        const held = await cache()?.get();
        if (held) await cache()?.invalidate(held.accessToken);
      };
      return { broker, volume, proxy, rotate, renew, cache };
    }

    it('when tls_client_auth matches the subject DN, then the token is bound to the certificate and the API gets it with the same certificate; a rotated certificate is used for the next token, the held token keeps its own', async () => {
      const { broker, proxy, rotate, renew, cache } = await mtlsBroker(
        'broker-dn',
        'tls_client_auth',
        certs.caIssued,
      );
      const first = thumbprintOf(certs.caIssued.cert);
      expect(await proxy()).toEqual({ status: 200, presented: first, bound: first });
      const token = await cache()?.get();
      expect(decodeJwt(token?.accessToken ?? '').client_id).toBe('broker-dn');

      await rotate(certs.caIssuedNext);
      // The token obtained with the old certificate is bound to it: the API is shown that one until renewal.
      expect(await proxy()).toEqual({ status: 200, presented: first, bound: first });
      await renew();
      const next = thumbprintOf(certs.caIssuedNext.cert);
      expect(await proxy()).toEqual({ status: 200, presented: next, bound: next });
      expect(JSON.stringify(broker.logs.lines())).not.toContain('PRIVATE KEY');
    });

    it('when tls_client_auth matches a SAN DNS name, then the client gets a token with client_id in the body and no secret anywhere', async () => {
      const { proxy } = await mtlsBroker('broker-san', 'tls_client_auth', certs.caIssued);
      const first = thumbprintOf(certs.caIssued.cert);
      expect(await proxy()).toEqual({ status: 200, presented: first, bound: first });
      const wire = buildTokenRequest(
        { ...auth.upstreamConfig(), clientId: 'broker-san', authMethod: 'tls_client_auth' },
        { type: 'client_credentials' },
      );
      expect(wire.headers.authorization).toBeUndefined();
      expect(Object.fromEntries(new URLSearchParams(wire.body))).toEqual({
        grant_type: 'client_credentials',
        scope: auth.scope,
        resource: auth.resource,
        client_id: 'broker-san',
      });
      const json = buildTokenRequest(
        { ...auth.upstreamConfig(), clientId: 'broker-san', profile: 'json', authMethod: 'tls_client_auth' },
        { type: 'client_credentials' },
      );
      expect(JSON.parse(json.body)).toEqual({
        grant_type: 'client_credentials',
        scope: auth.scope,
        resource: auth.resource,
        client_id: 'broker-san',
      });
    });

    it('when self_signed_tls_client_auth presents a registered certificate, then the token is bound to it; the rotated one (registered too) is used for the next token', async () => {
      const { proxy, rotate, renew } = await mtlsBroker(
        'broker-self',
        'self_signed_tls_client_auth',
        certs.selfSigned,
      );
      const first = thumbprintOf(certs.selfSigned.cert);
      expect(await proxy()).toEqual({ status: 200, presented: first, bound: first });
      await rotate(certs.selfSignedNext);
      await renew();
      const next = thumbprintOf(certs.selfSignedNext.cert);
      expect(await proxy()).toEqual({ status: 200, presented: next, bound: next });
    });

    it('when a CA-issued certificate is presented for the self-signed client, then the server refuses the client: upstream_rejected', async () => {
      const { proxy } = await mtlsBroker('broker-self', 'self_signed_tls_client_auth', certs.caIssued);
      expect(await proxy()).toEqual({ status: 502, code: 'upstream_rejected' });
    });

    it('when a reload brings a key that does not match the certificate, then it is refused on one line naming the setting and the old certificate keeps serving', async () => {
      const { broker, volume, proxy, renew } = await mtlsBroker(
        'broker-dn',
        'tls_client_auth',
        certs.caIssued,
      );
      const first = thumbprintOf(certs.caIssued.cert);
      expect(await proxy()).toEqual({ status: 200, presented: first, bound: first });
      volume.swap({
        'tls.crt': certs.caIssuedNext.cert,
        'tls.key': certs.caIssued.key,
        'ca.crt': pki.ca.cert,
      });
      await waitFor(() => broker.broker.reloader?.status().lastReload?.outcome === 'refused');
      const refusals = broker.logs
        .lines()
        .filter((line) => String(line.msg).startsWith('configuration reload refused'));
      expect(refusals).toHaveLength(1);
      expect(refusals[0]?.msg).toBe(
        'configuration reload refused: UPSTREAM_TLS_KEY_FILE; generation 1 keeps serving',
      );
      expect(JSON.stringify(refusals)).not.toContain('PRIVATE KEY');
      await renew();
      expect(await proxy()).toEqual({ status: 200, presented: first, bound: first });
    });
  },
);

describe.skipIf(await missing('openssl'))('mutual-TLS settings at start-up', () => {
  let pki: TestAuthority;
  let one: IssuedCertificate;
  let other: IssuedCertificate;
  beforeAll(async () => {
    pki = await createTestAuthority();
    one = await pki.issue('one', { subject: '/CN=one' });
    other = await pki.issue('other', { subject: '/CN=other' });
  });
  afterAll(() => pki?.remove());

  const env = (files: Record<string, string>) => ({
    UPSTREAM_TOKEN_URL: 'https://auth.example.com/token',
    UPSTREAM_CLIENT_ID: 'broker',
    UPSTREAM_AUTH_METHOD: 'tls_client_auth',
    ...files,
  });

  it('when the key does not match the certificate, then the start stops on one line naming the key setting, quoting neither file', () => {
    const problems = configProblems(
      env({ UPSTREAM_TLS_CERT_FILE: one.certPath, UPSTREAM_TLS_KEY_FILE: other.keyPath }),
    );
    expect(problems).toEqual([
      `UPSTREAM_TLS_KEY_FILE: the key in ${other.keyPath} does not match the certificate of UPSTREAM_TLS_CERT_FILE; rotate both files together, e.g. UPSTREAM_TLS_KEY_FILE=/var/run/secrets/broker-tls/tls.key`,
    ]);
  });

  it('when a file is missing, then the problem names the setting and shows an example', () => {
    const problems = configProblems(
      env({ UPSTREAM_TLS_CERT_FILE: `${one.certPath}.missing`, UPSTREAM_TLS_KEY_FILE: one.keyPath }),
    );
    expect(problems).toEqual([
      `UPSTREAM_TLS_CERT_FILE: cannot read ${one.certPath}.missing (ENOENT), e.g. UPSTREAM_TLS_CERT_FILE=/var/run/secrets/broker-tls/tls.crt`,
    ]);
    expect(configProblems(env({ UPSTREAM_TLS_CERT_FILE: one.certPath }))).toEqual([
      'UPSTREAM_TLS_KEY_FILE: required with UPSTREAM_AUTH_METHOD=tls_client_auth, e.g. UPSTREAM_TLS_KEY_FILE=/var/run/secrets/broker-tls/tls.key',
    ]);
  });

  it('when the certificate file holds a key, or a secret is set beside the certificate, then each is one line naming its setting', () => {
    expect(
      configProblems(
        env({
          UPSTREAM_TLS_CERT_FILE: one.keyPath,
          UPSTREAM_TLS_KEY_FILE: one.keyPath,
          UPSTREAM_CLIENT_SECRET: 'not-needed-with-a-certificate',
        }),
      ),
    ).toEqual([
      'UPSTREAM_CLIENT_SECRET: not used with UPSTREAM_AUTH_METHOD=tls_client_auth; drop it',
      `UPSTREAM_TLS_CERT_FILE: ${one.keyPath} does not hold a PEM certificate, e.g. UPSTREAM_TLS_CERT_FILE=/var/run/secrets/broker-tls/tls.crt`,
    ]);
    expect(
      configProblems({
        UPSTREAM_TOKEN_URL: 'https://auth.example.com/token',
        UPSTREAM_CLIENT_ID: 'broker',
        UPSTREAM_CLIENT_SECRET: 'a-client-secret-of-enough-length',
        UPSTREAM_TLS_CERT_FILE: one.certPath,
      }),
    ).toEqual([
      'UPSTREAM_TLS_CERT_FILE: only used with UPSTREAM_AUTH_METHOD=tls_client_auth or self_signed_tls_client_auth; set one or drop the file',
    ]);
  });

  it('when the token endpoint is plain http, then the start stops: the certificate would never be presented', () => {
    expect(
      configProblems({
        ...env({ UPSTREAM_TLS_CERT_FILE: one.certPath, UPSTREAM_TLS_KEY_FILE: one.keyPath }),
        UPSTREAM_TOKEN_URL: 'http://127.0.0.1:8080/token',
      }),
    ).toEqual([
      'UPSTREAM_TOKEN_URL: tls_client_auth needs an https URL (the certificate travels in the TLS handshake), e.g. UPSTREAM_TOKEN_URL=https://auth.example.com/oauth/token',
    ]);
  });

  it('when upstreams share the certificate, then each takes it; one with its own token endpoint must bring its own', () => {
    const shared = {
      ...env({ UPSTREAM_TLS_CERT_FILE: one.certPath, UPSTREAM_TLS_KEY_FILE: one.keyPath, NODE_ENV: 'test' }),
      UPSTREAMS: 'entry,search',
    };
    const config = loadConfig(shared);
    expect(config.upstreams.map((upstream) => upstream.config.tlsClient?.thumbprint)).toEqual([
      thumbprintOf(one.cert),
      thumbprintOf(one.cert),
    ]);
    expect(
      configProblems({ ...shared, UPSTREAM_ENTRY_TOKEN_URL: 'https://other.example.com/token' }),
    ).toEqual([
      'UPSTREAM_ENTRY_TLS_CERT_FILE: required, since "entry" has its own UPSTREAM_ENTRY_TOKEN_URL and the shared UPSTREAM_TLS_CERT_FILE goes only to the shared token endpoint (UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER), e.g. UPSTREAM_ENTRY_TLS_CERT_FILE=/var/run/secrets/broker-tls/tls.crt',
    ]);
  });

  it('when the files are good, then the identity carries the x5t#S256 and serialises to nothing', () => {
    const config = loadConfig(
      env({ UPSTREAM_TLS_CERT_FILE: one.certPath, UPSTREAM_TLS_KEY_FILE: one.keyPath, NODE_ENV: 'test' }),
    );
    const upstream = config.upstreams[0]?.config;
    expect(upstream?.tlsClient?.thumbprint).toBe(thumbprintOf(one.cert));
    expect(JSON.stringify(upstream)).not.toContain('tlsClient');
  });
});
