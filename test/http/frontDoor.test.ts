import { readdirSync } from 'node:fs';
import { extname } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker } from '../../src/broker.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config/index.js';
import { probeUpstreams } from '../../src/config/startupChecks.js';
import { publicDir } from '../../src/http/app.js';
import { type OidcBroker, startBroker } from '../support/broker.js';
import { freePort } from '../support/freePort.js';
import { captureLogs, registerSecret } from '../support/logs.js';

const origin = 'https://app.example.com';

describe('POST /api/auth/claim with a malformed ip', () => {
  let broker: OidcBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => broker.close());

  it('when the key is valid (in the query, as Trefle documents it), then it is 400 invalid_request naming ip', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .query({ token: broker.apiKey, origin, ip: 'THE-WEBSITE-USER-IP' });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({
      code: 'invalid_request',
      detail: expect.stringMatching(/^ip: .*e\.g\. /),
    });
  });

  it('when the key is valid in the Authorization header, then it is also 400 naming ip', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .set('Authorization', `Bearer ${broker.apiKey}`)
      .send({ origin, ip: '203.0.113' });
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/^ip: /);
  });

  it('when the key is wrong, then the key is refused first (401), whatever the ip', async () => {
    const res = await request(broker.url)
      .post('/api/auth/claim')
      .query({ token: 'not-a-key-of-this-broker-0123456789', origin, ip: 'THE-WEBSITE-USER-IP' });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('invalid_api_key');
  });
});

describe('the proxy without UPSTREAM_API_URL', () => {
  it('when /api/proxy/* is called, then the 404 says that the proxy is off and why', async () => {
    const broker = await startBroker();
    try {
      const res = await request(broker.url).get('/api/proxy/things').set('Origin', origin);
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({
        code: 'not_found',
        detail: expect.stringContaining('UPSTREAM_API_URL'),
      });
    } finally {
      await broker.close();
    }
  });
});

describe('an upstream that refuses the broker', () => {
  it('when the client secret is wrong, then the 502 upstream_rejected has a detail without the secret', async () => {
    const wrong = registerSecret('wrong upstream secret', 'wrong-upstream-secret-Vb7Nq2Lx');
    const broker = await startBroker({ env: { UPSTREAM_CLIENT_SECRET: wrong } });
    try {
      const res = await request(broker.url)
        .get('/api/upstream-token')
        .set('Authorization', `Bearer ${broker.apiKey}`);
      expect(res.status).toBe(502);
      expect(res.body.code).toBe('upstream_rejected');
      expect(res.body.detail).toMatch(/invalid_client.*UPSTREAM_/);
      expect(res.text).not.toContain(wrong);
    } finally {
      await broker.close();
    }
  });
});

describe('an unreachable upstream', () => {
  let closedPort: number;
  beforeAll(async () => {
    closedPort = await freePort();
  });

  async function brokerAt(tokenUrl: string) {
    const config = loadConfig({
      NODE_ENV: 'test',
      UPSTREAM_TOKEN_URL: tokenUrl,
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_CLIENT_SECRET: registerSecret('unreachable upstream secret', 'unreachable-secret-Pw4Kc9Tz'),
      BROKER_API_KEYS: registerSecret('unreachable broker key', 'unreachable-broker-key-Hs6Jd1Qm-4vXb8Ne2'),
    });
    const logs = captureLogs('info');
    const upstreamProbes = await probeUpstreams(config);
    const upstreamProbe = upstreamProbes.get('default');
    const broker = await createBroker({ config, logger: logs.logger, clock: systemClock, upstreamProbes });
    return { broker, logs, upstreamProbe };
  }

  it('when the token URL points at a closed port, then /readyz is 503 and gives the start-up reason', async () => {
    const { broker, upstreamProbe } = await brokerAt(`http://127.0.0.1:${closedPort}/token`);
    try {
      expect(upstreamProbe).toEqual({ reachable: false, reason: expect.stringContaining('ECONNREFUSED') });
      const res = await request(broker.app).get('/readyz');
      expect(res.status).toBe(503);
      expect(res.body.upstream).toMatchObject({
        token: 'unavailable',
        code: 'upstream_unavailable',
        unreachableAtStart: `cannot connect to http://127.0.0.1:${closedPort} (ECONNREFUSED)`,
      });
    } finally {
      await broker.close();
    }
  });

  it('when a caller waits on it, then the 503 is logged in one line with the reason and no stack', async () => {
    const { broker, logs } = await brokerAt(`http://127.0.0.1:${closedPort}/token`);
    try {
      const res = await request(broker.app)
        .get('/api/upstream-token')
        .set('Authorization', 'Bearer unreachable-broker-key-Hs6Jd1Qm-4vXb8Ne2');
      expect(res.status).toBe(503);
      const line = logs.lines().find((entry) => entry.code === 'upstream_unavailable');
      expect(line).toMatchObject({ level: 'warn', reason: expect.stringContaining('ECONNREFUSED') });
      expect(JSON.stringify(line)).not.toMatch(/"stack"|\\n\s+at /);
      expect(line?.err).toBeUndefined();
    } finally {
      await broker.close();
    }
  });
});

describe('the files under public/', () => {
  const types: Record<string, RegExp> = {
    '.js': /^text\/javascript; charset=utf-8$/,
    '.ts': /^text\/plain; charset=utf-8$/,
    '.html': /^text\/html; charset=utf-8$/,
    '.css': /^text\/css; charset=utf-8$/,
    '.svg': /^image\/svg\+xml/,
  };

  it('when each is fetched from a demo broker, then it comes with the content type of what it is', async () => {
    // No upstream request is made: static files need none.
    const config = loadConfig({
      NODE_ENV: 'test',
      UPSTREAM_TOKEN_URL: 'http://127.0.0.1:9/token',
      UPSTREAM_CLIENT_ID: 'broker',
      UPSTREAM_CLIENT_SECRET: registerSecret('demo broker secret', 'demo-broker-secret-Rt5Mw8Gx'),
    });
    const demo = await createBroker({
      config,
      logger: captureLogs('info').logger,
      clock: systemClock,
      demo: true,
    });
    try {
      for (const file of readdirSync(publicDir)) {
        const path = file === 'index.html' ? '/' : `/${file}`;
        const res = await request(demo.app).get(path);
        expect(res.status, path).toBe(200);
        expect(types[extname(file)], `a content type for ${file}`).toBeDefined();
        expect(res.headers['content-type'], path).toMatch(types[extname(file)] as RegExp);
      }
    } finally {
      await demo.close();
    }
  });
});
