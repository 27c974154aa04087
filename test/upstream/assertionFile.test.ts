import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { federatedAssertionTypes } from '../../src/upstream/assertionFile.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { configProblems } from '../support/expectErrors.js';
import { registerSecret } from '../support/logs.js';
import { type Behaviour, reply } from '../support/oauthServers.js';
import { createSecretVolume } from '../support/secretVolume.js';
import { sleep } from '../support/waiting.js';

/** A Kubernetes cluster's service-account issuer: its key set served on loopback, and the tokens it signs. */
async function startClusterIssuer() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'cluster-1', alg: 'ES256' };
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = 'https://kubernetes.default.svc.cluster.local';
  return {
    issuer,
    jwksUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/openid/v1/jwks`,
    /** A projected service-account token for the broker's service account, valid `seconds` from now. */
    token: (seconds: number, subject = 'system:serviceaccount:web:broker') =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'cluster-1' })
        .setIssuer(issuer)
        .setSubject(subject)
        .setAudience(authAudience)
        .setJti(randomUUID())
        .setIssuedAt(Math.floor(Date.now() / 1000) + Math.min(0, seconds) - 60)
        .setExpirationTime(Math.floor(Date.now() / 1000) + seconds)
        .sign(privateKey)
        .then((jwt) => registerSecret('service-account token', jwt)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const authAudience = 'https://auth.example.com';

/**
 * As small as an authorization server with federated credentials can be: client `broker` is the
 * service account `web/broker` of a cluster whose key set it fetches, and nothing else authenticates it.
 */
function federatedTokenEndpoint(
  cluster: { issuer: string; jwksUrl: string },
  seen: string[],
  issued: string[],
  assertionType: string,
): Behaviour {
  const keySet = createRemoteJWKSet(new URL(cluster.jwksUrl));
  return async (req, res) => {
    const form = new URLSearchParams(req.body);
    const assertion = form.get('client_assertion') ?? '';
    seen.push(assertion);
    const refuse = () => reply(res, 401, { error: 'invalid_client' });
    if (form.get('grant_type') !== 'client_credentials' || form.get('client_id') !== 'broker')
      return refuse();
    if (form.get('client_assertion_type') !== assertionType) return refuse();
    try {
      const { payload } = await jwtVerify(assertion, keySet, {
        issuer: cluster.issuer,
        audience: authAudience,
      });
      if (payload.sub !== 'system:serviceaccount:web:broker') return refuse();
    } catch {
      return refuse();
    }
    const token = registerSecret('federated access token', `fed-at-${randomBytes(18).toString('base64url')}`);
    issued.push(token);
    reply(res, 200, { access_token: token, token_type: 'Bearer', expires_in: 3600 });
  };
}

describe('client_assertion_file: a platform-issued JWT instead of a stored secret', () => {
  let cluster: Awaited<ReturnType<typeof startClusterIssuer>>;
  beforeAll(async () => {
    cluster = await startClusterIssuer();
  });
  afterAll(() => cluster?.close());

  async function federatedBroker(assertionType: 'jwt-bearer' | 'jwt-spiffe' = 'jwt-bearer') {
    const volume = createSecretVolume({ token: await cluster.token(600) });
    const seen: string[] = [];
    const broker = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      reload: { debounceMs: 50 },
      behaviour: (issued) =>
        federatedTokenEndpoint(cluster, seen, issued, federatedAssertionTypes[assertionType]),
      env: {
        UPSTREAM_CLIENT_ID: 'broker',
        UPSTREAM_CLIENT_SECRET: '',
        UPSTREAM_AUTH_METHOD: 'client_assertion_file',
        UPSTREAM_CLIENT_ASSERTION_FILE: volume.path('token'),
        UPSTREAM_CLIENT_ASSERTION_TYPE: assertionType,
      },
    });
    const proxy = async () => {
      const token = await broker.clientToken(appOrigin);
      const answer = await broker.request({
        path: '/api/proxy/things',
        headers: { authorization: `Bearer ${token}`, origin: appOrigin },
      });
      return { status: answer.status, code: (JSON.parse(answer.body) as { code?: string }).code };
    };
    const renew = () => broker.broker.upstreams.get('default')?.cache?.invalidate(broker.issued.at(-1) ?? '');
    const ready = async () => (await broker.request({ path: '/readyz' })).status;
    return { broker, volume, seen, proxy, renew, ready };
  }

  it('when the platform rotates the file, then the next token request sends the new JWT and the token cache keeps its key', async () => {
    const { broker, volume, seen, proxy, renew } = await federatedBroker();
    expect((await proxy()).status).toBe(200);
    const rotated = await cluster.token(600);
    volume.swap({ token: rotated });
    await renew();
    expect((await proxy()).status).toBe(200);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(rotated);
    expect(seen[0]).not.toBe(rotated);
    expect(broker.upstream.requests.every((request) => !request.headers.authorization)).toBe(true);
    volume.remove();
  });

  it('when the SPIFFE draft type is configured, then the assertion is sent with it', async () => {
    const { volume, proxy, seen } = await federatedBroker('jwt-spiffe');
    expect((await proxy()).status).toBe(200);
    expect(seen).toHaveLength(1);
    volume.remove();
  });

  it('when the file holds an expired JWT or is removed, then token requests are refused as upstream_rejected and the broker is not ready until it is fixed', async () => {
    const { broker, volume, seen, proxy, renew, ready } = await federatedBroker();
    expect((await proxy()).status).toBe(200);
    const expired = await cluster.token(-120);
    volume.swap({ token: expired });
    await renew();
    expect(await proxy()).toEqual({ status: 502, code: 'upstream_rejected' });
    expect(await ready()).toBe(503);
    expect(seen).toHaveLength(1);
    const logged = JSON.stringify(broker.logs.lines());
    expect(logged).toContain('invalid_client_assertion');
    expect(logged).toContain('holds a JWT that expired at');
    expect(logged).not.toContain(expired);

    // The key removed from the Secret: the kubelet's next swap leaves the link dangling.
    volume.swap({});
    expect(await proxy()).toEqual({ status: 502, code: 'upstream_rejected' });
    expect(await ready()).toBe(503);
    expect(seen).toHaveLength(1);

    // Refused configurations are asked again within seconds: readiness returns once the file is fixed.
    volume.swap({ token: await cluster.token(600) });
    const until = Date.now() + 20_000;
    while ((await ready()) !== 200 && Date.now() < until) await sleep(100);
    expect(await ready()).toBe(200);
    expect((await proxy()).status).toBe(200);
    expect(seen).toHaveLength(2);
    volume.remove();
  });

  it('when the file does not hold a JWT at start-up, then the start stops on one line naming the setting', () => {
    const volume = createSecretVolume({ token: 'not-a-jwt' });
    const problems = configProblems({
      UPSTREAM_TOKEN_URL: 'https://auth.example.com/token',
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_AUTH_METHOD: 'client_assertion_file',
      UPSTREAM_CLIENT_ASSERTION_FILE: volume.path('token'),
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^UPSTREAM_CLIENT_ASSERTION_FILE: \S+ does not hold a JWT \(header\.payload\.signature in base64url\)/,
    );
    expect(problems[0]).not.toContain('not-a-jwt');
    volume.remove();
  });
});
