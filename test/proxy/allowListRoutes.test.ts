import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConfigCommand } from '../../src/cli/checkConfig.js';
import { compileAllowList } from '../../src/proxy/allowList.js';
import { type AllowRule, parseAllowRules } from '../../src/proxy/allowRules.js';
import { checkedPath } from '../../src/proxy/targetUrl.js';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { acceptedPaths, ruleSpellings, traversalAttempts } from '../support/pathCorpus.js';
import { call } from '../support/rawCall.js';

const allow = 'GET /plants/*, GET /species/**, POST /search, * /open/*/x';
const allowed = compileAllowList(parseAllowRules(allow) as AllowRule[]);

let broker: BrokerHandle<'fake', 'fixed'>;
let token: string;

beforeAll(async () => {
  broker = await startBroker({ upstream: 'fake', api: 'fixed', env: { UPSTREAM_ALLOW: allow } });
  token = await broker.clientToken();
});

afterAll(async () => {
  await broker.close();
});

const headers = () => ({ origin: appOrigin, authorization: `Bearer ${token}` });

/** What the broker must answer for a path after `/api/proxy`: the forwarder's check, then the rules. */
function expected(method: string, spelling: string): number {
  if (spelling !== '' && !spelling.startsWith('/') && !spelling.startsWith('?')) return 404;
  const subPath = spelling.startsWith('/') ? spelling : `/${spelling}`;
  try {
    return allowed(method, checkedPath(subPath).path) ? 200 : 403;
  } catch {
    return 400;
  }
}

describe('UPSTREAM_ALLOW on /api/proxy/*', () => {
  it('when a call matches no rule, then it is refused with path_not_allowed before a token is fetched or the body read', async () => {
    const refused = await call(broker.url, '/api/proxy/plants/1?x=1', {
      method: 'DELETE',
      headers: headers(),
    });
    expect(refused.status).toBe(403);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.json()).toMatchObject({
      code: 'path_not_allowed',
      detail: 'DELETE /plants/1 is not allowed on this upstream (UPSTREAM_ALLOW)',
    });

    // An upload that never ends: the refusal comes without waiting for it.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const upload = request(`${broker.url}/api/proxy/admin/users`, {
        method: 'POST',
        headers: { ...headers(), 'content-type': 'application/json', 'content-length': '1000000' },
      });
      upload.on('error', reject);
      upload.on('response', (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
          upload.destroy();
        });
      });
      upload.write('{"never":"ends"');
    });
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'path_not_allowed' });
    expect(answer.body).toContain('POST /admin/users');
    expect(broker.upstream.requests).toHaveLength(0);
    expect(broker.api.requests).toHaveLength(0);
  });

  it('when a call matches a rule, then it is forwarded with its path and query unchanged', async () => {
    const answer = await call(broker.url, '/api/proxy/species/a/b?q=1', { headers: headers() });
    expect(answer.status).toBe(200);
    expect(broker.api.requests.at(-1)?.url).toBe('/species/a/b?q=1');
    const post = await call(broker.url, '/api/proxy/search', {
      method: 'POST',
      headers: headers(),
      body: '{}',
    });
    expect(post.status).toBe(200);
  });

  const corpus = [
    ...new Set([...ruleSpellings, ...traversalAttempts, ...acceptedPaths.map(([path]) => path)]),
  ]
    // What node:http cannot put on a request line (it refuses spaces and controls before sending).
    .filter((spelling) => !/[^\u0021-\u00ff]/.test(spelling));

  it.each(corpus)(
    'when the path is %j, then the direct lane and Express both answer as the rules say',
    async (spelling) => {
      for (const method of ['GET', 'DELETE']) {
        const want = expected(method, spelling);
        const seen = broker.api.requests.length;
        const plain = await call(broker.url, `/api/proxy${spelling}`, { method, headers: headers() });
        const express = await call(broker.url, `${broker.url}/api/proxy${spelling}`, {
          method,
          headers: headers(),
        });
        expect([method, plain.status, express.status]).toEqual([method, want, want]);
        if (want === 403) {
          expect(plain.json()).toMatchObject({ code: 'path_not_allowed' });
          expect(express.json().detail).toBe(plain.json().detail);
        }
        // Only what the rules open reaches the API, once per lane.
        expect(broker.api.requests.length - seen).toBe(want === 200 ? 2 : 0);
      }
    },
  );
});

describe('a client token narrowed by an allow claim', () => {
  it("when a backend claims a token with allow rules, then it opens only calls both its rules and the upstream's open", async () => {
    const claim = (allowRules: string) =>
      call(broker.url, '/api/auth/claim', {
        method: 'POST',
        headers: { authorization: `Bearer ${broker.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ origin: appOrigin, allow: allowRules }),
      });
    const refused = await claim('GET plants');
    expect(refused.status).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'invalid_request' });
    expect(refused.json().detail).toMatch(/^allow: rule "GET plants" must have a path/);

    const claimed = await claim('get /plants/quercus, DELETE /plants/*, GET /species/**');
    expect(claimed.status).toBe(200);
    const narrowed = registerSecret('narrowed client token', claimed.json().token as string);
    const as = { headers: { origin: appOrigin, authorization: `Bearer ${narrowed}` } };
    expect((await call(broker.url, '/api/proxy/plants/quercus', as)).status).toBe(200);
    expect((await call(broker.url, '/api/proxy/species/a/b', as)).status).toBe(200);
    const other = await call(broker.url, '/api/proxy/plants/acer', as);
    expect(other.status).toBe(403);
    expect(other.json()).toMatchObject({
      code: 'path_not_allowed',
      detail: 'GET /plants/acer is not allowed by this client token (its allow claim)',
    });
    // The claim cannot widen the upstream's rules, which open no DELETE.
    const widened = await call(broker.url, '/api/proxy/plants/1', { ...as, method: 'DELETE' });
    expect(widened.json()).toMatchObject({
      code: 'path_not_allowed',
      detail: 'DELETE /plants/1 is not allowed on this upstream (UPSTREAM_ALLOW)',
    });
  });
});

describe('UPSTREAM_ALLOW with a call budget', () => {
  it("when calls are refused by the allow-list, then they spend none of the token's budget", async () => {
    const budgeted = await startBroker({
      upstream: 'fake',
      api: 'fixed',
      env: { UPSTREAM_ALLOW: 'GET /plants/*', CLIENT_TOKEN_MAX_CALLS: '2' },
    });
    const budgetToken = await budgeted.clientToken();
    const as = { headers: { origin: appOrigin, authorization: `Bearer ${budgetToken}` } };
    for (let i = 0; i < 3; i += 1) {
      expect((await call(budgeted.url, '/api/proxy/admin', as)).status).toBe(403);
    }
    expect((await call(budgeted.url, '/api/proxy/plants/1', as)).status).toBe(200);
    expect((await call(budgeted.url, '/api/proxy/plants/2', as)).status).toBe(200);
    // The budget of 2 is spent by the two calls that went through, and only by them.
    expect((await call(budgeted.url, '/api/proxy/plants/3', as)).status).toBe(429);
  });
});

describe('UPSTREAM_<NAME>_ALLOW and check-config', () => {
  it('when named upstreams have rules or none, then each proxy applies its own and check-config says which open everything', async () => {
    const env = {
      UPSTREAMS: 'plants,open',
      UPSTREAM_PLANTS_ALLOW: 'GET /plants/*',
      UPSTREAM_OPEN_API_URL: 'https://open.example.com',
      UPSTREAM_PLANTS_API_URL: 'https://plants.example.com/v1',
    };
    for (const name of ['PLANTS', 'OPEN']) {
      Object.assign(env, {
        [`UPSTREAM_${name}_TOKEN_URL`]: 'https://auth.example.com/oauth/token',
        [`UPSTREAM_${name}_CLIENT_ID`]: 'broker',
        [`UPSTREAM_${name}_CLIENT_SECRET`]: 'allow-list-check-config-secret',
      });
    }
    let stdout = '';
    const code = await checkConfigCommand.run([], {
      env,
      cwd: '/nonexistent-token-broker-dir',
      stdout: (text) => {
        stdout += text;
      },
      stderr: () => {},
      readStdin: async () => '',
      secrets: new Set(),
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(/plants allow:\s+GET \/plants\/\*\n/);
    expect(stdout).toMatch(/open allow:\s+unset: opens every method and path\n/);
  });

  it('when a rule is malformed, then start-up names the variable, the rule and an example', async () => {
    let stderr = '';
    const code = await checkConfigCommand.run([], {
      env: {
        UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
        UPSTREAM_CLIENT_ID: 'broker',
        UPSTREAM_CLIENT_SECRET: 'allow-list-check-config-secret',
        UPSTREAM_ALLOW: 'GET /plants/*, DELETE plants',
      },
      cwd: '/nonexistent-token-broker-dir',
      stdout: () => {},
      stderr: (text) => {
        stderr += text;
      },
      readStdin: async () => '',
      secrets: new Set(),
    });
    expect(code).toBe(1);
    expect(stderr).toContain('UPSTREAM_ALLOW: rule "DELETE plants" must have a path starting with "/"');
    expect(stderr).toContain('rules look like "GET /plants/*, GET /species/**, POST /search"');
  });
});
