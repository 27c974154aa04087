import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError } from '../../../src/errors.js';
import { directRoutes, type RequestListener } from '../../../src/http/dispatch/directRoutes.js';
import type { BrokerResponse, Handler } from '../../../src/http/dispatch/handler.js';
import type { Route } from '../../../src/http/dispatch/routeMatcher.js';
import { sendProblem } from '../../../src/http/problem.js';
import { appOrigin, type BrokerHandle, startBroker } from '../../support/broker.js';
import { call } from '../../support/rawCall.js';

/**
 * The dispatcher on its own: a table of made-up routes, and in place of Express a listener that records
 * what reached it. The route table's own hot routes are driven through a real broker below.
 */

interface Seen {
  lane: 'direct' | 'app';
  url: string;
  originalUrl?: string | undefined;
  route?: string | undefined;
  common: boolean;
}

let seen: Seen[] = [];
let server: Server;
let base: string;
let onErrorThrows = false;

const answer =
  (lane: 'direct' | 'app'): Handler =>
  (req, res) => {
    seen.push({
      lane,
      url: req.url ?? '',
      originalUrl: req.originalUrl,
      route: res.locals.route,
      common: (res.locals as { common?: boolean }).common === true,
    });
    res.end(lane);
  };
const common: Handler[] = [
  (_req, res, next) => {
    (res.locals as { common?: boolean }).common = true;
    next();
  },
];
const routes: Route[] = [
  {
    name: 'clientToken',
    methods: 'all',
    path: '/api/hot',
    match: 'exact',
    lane: 'direct',
    chain: [answer('direct')],
  },
  {
    name: 'healthz',
    methods: ['GET'],
    path: '/api/get-only',
    match: 'exact',
    lane: 'direct',
    chain: [answer('direct')],
  },
  {
    name: 'proxy',
    methods: 'all',
    path: '/api/mount/a',
    match: 'mount',
    lane: 'direct',
    chain: [answer('direct')],
  },
  {
    name: 'revoke',
    methods: 'all',
    path: '/api/failing',
    match: 'exact',
    lane: 'direct',
    chain: [(req, _res, next) => next(req.headers['x-fail'] === 'throw' ? new Error('boom') : undefined)],
  },
  { name: 'readyz', methods: ['GET'], path: '/api/cold', match: 'exact', lane: 'express', chain: [] },
];
// Stands in for Express: it records what reached it, with the route the listener named.
const app: RequestListener = (req, res) => answer('app')(req, res as BrokerResponse, () => {});

beforeAll(async () => {
  const listener = directRoutes({
    app,
    common,
    routes,
    onError: (error, _req, res) => {
      if (onErrorThrows) throw new Error('the error handler failed');
      sendProblem(res, error instanceof BrokerError ? error : new BrokerError('internal_error'));
    },
  });
  server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
afterEach(() => {
  seen = [];
  onErrorThrows = false;
});

async function lanes(...targets: string[]) {
  for (const target of targets) await call(base, target);
  return seen.map(({ lane, route }) => ({ lane, route }));
}

describe('which lane a target takes', () => {
  it('when an exact route is asked for as written, with or without a query, then the direct lane serves it', async () => {
    expect(await lanes('/api/hot', '/api/hot?x=1')).toEqual([
      { lane: 'direct', route: 'clientToken' },
      { lane: 'direct', route: 'clientToken' },
    ]);
    expect(seen.every((request) => request.common)).toBe(true);
  });

  it('when an exact route is spelled otherwise, then the app gets it, with the route named all the same', async () => {
    const targets = ['/API/hot', '/api/hot/', `${'http://broker.example'}/api/hot`, '/api/hot#x'];
    expect(await lanes(...targets)).toEqual(targets.map(() => ({ lane: 'app', route: 'clientToken' })));
  });

  it('when a path is near a route but not it, then the app gets it with no route named', async () => {
    expect(await lanes('/api/hotter', '/api/hot//', '/api/mount/ab/x', '/api/mount')).toEqual([
      { lane: 'app', route: undefined },
      { lane: 'app', route: undefined },
      { lane: 'app', route: undefined },
      { lane: 'app', route: undefined },
    ]);
  });

  it('when a mount is asked for in any letter case, then the direct lane serves it, the chain seeing the rest of the path', async () => {
    expect(await lanes('/api/mount/a/items?q=1', '/API/Mount/A/items')).toEqual([
      { lane: 'direct', route: 'proxy' },
      { lane: 'direct', route: 'proxy' },
    ]);
    expect(seen.map(({ url, originalUrl }) => ({ url, originalUrl }))).toEqual([
      { url: '/items?q=1', originalUrl: '/api/mount/a/items?q=1' },
      { url: '/items', originalUrl: '/API/Mount/A/items' },
    ]);
  });

  it('when a mount has nothing after its slash but a query, or no slash, then the app gets it, named', async () => {
    expect(await lanes('/api/mount/a/?x', '/api/mount/a')).toEqual([
      { lane: 'app', route: 'proxy' },
      { lane: 'app', route: 'proxy' },
    ]);
  });

  it('when a direct route takes some methods only, then HEAD goes with GET and the others go to the app, unnamed', async () => {
    await call(base, '/api/get-only');
    await call(base, '/api/get-only', { method: 'HEAD' });
    await call(base, '/api/get-only', { method: 'POST' });
    expect(seen.map(({ lane, route }) => ({ lane, route }))).toEqual([
      { lane: 'direct', route: 'healthz' },
      { lane: 'direct', route: 'healthz' },
      { lane: 'app', route: undefined },
    ]);
  });

  it('when a route is for Express only, then the app gets even its plain spelling, named', async () => {
    expect(await lanes('/api/cold')).toEqual([{ lane: 'app', route: 'readyz' }]);
  });
});

describe('what the direct lane answers when a chain does not', () => {
  it('when the chain passes an error on, then the error handler answers it', async () => {
    const answer = await call(base, '/api/failing', { headers: { 'x-fail': 'throw' } });
    expect(answer.status).toBe(500);
    expect(answer.json().code).toBe('internal_error');
  });

  it('when every layer passes the request on, then it is answered 404 not_found', async () => {
    const answer = await call(base, '/api/failing');
    expect(answer.status).toBe(404);
    expect(answer.json().code).toBe('not_found');
  });

  it('when the error handler itself fails, then the connection is cut rather than left hanging', async () => {
    onErrorThrows = true;
    await expect(call(base, '/api/failing')).rejects.toThrow(/socket hang up|ECONNRESET/);
  });
});

describe('the hot routes of the real table', () => {
  let broker: BrokerHandle<'fake', 'fixed'>;
  let token: string;
  beforeAll(async () => {
    broker = await startBroker({ upstream: 'fake', api: 'fixed' });
    token = await broker.clientToken();
  });
  afterAll(() => broker.close());

  const laneOf = async (target: string, method = 'GET') => {
    const answer = await call(broker.url, target, {
      method,
      headers: { origin: appOrigin, authorization: `Bearer ${token}` },
    });
    const requestId = answer.headers['x-request-id'];
    const line = broker.logs.lines().find((entry) => entry.reqId === requestId && entry.msg === 'request');
    const wire = broker.answers.at(-1);
    return { status: answer.status, lane: wire?.lane, route: line?.route };
  };

  it('when a browser calls the proxy or asks for a client token as it does, then Express never sees the request', async () => {
    expect(await laneOf('/api/client-token', 'POST')).toEqual({
      status: 200,
      lane: 'direct',
      route: 'clientToken',
    });
    expect(await laneOf('/api/client-token?upstreams=default')).toEqual({
      status: 200,
      lane: 'direct',
      route: 'clientToken',
    });
    expect(await laneOf('/api/proxy/items?x=1')).toEqual({ status: 200, lane: 'direct', route: 'proxy' });
    expect(await laneOf('/api/proxy/items', 'POST')).toEqual({ status: 200, lane: 'direct', route: 'proxy' });
    expect(await laneOf('/api/proxy/items', 'OPTIONS')).toMatchObject({ lane: 'direct', route: 'proxy' });
  });

  it('when the same routes are spelled as only Express reads them, then Express serves them under the same name', async () => {
    expect(await laneOf('/api/client-token/', 'POST')).toEqual({
      status: 200,
      lane: 'express',
      route: 'clientToken',
    });
    expect(await laneOf(`${broker.url}/api/proxy/items`)).toEqual({
      status: 200,
      lane: 'express',
      route: 'proxy',
    });
  });

  it('when another route is called, then Express serves it and the access line names it', async () => {
    expect(await laneOf('/healthz')).toEqual({ status: 200, lane: 'express', route: 'healthz' });
    expect(await laneOf('/openapi.json')).toEqual({ status: 200, lane: 'express', route: 'openapi' });
    expect(await laneOf('/.well-known/jwks.json')).toEqual({ status: 200, lane: 'express', route: 'jwks' });
    expect(await laneOf('/api/client-token/introspect', 'POST')).toEqual({
      status: 401,
      lane: 'express',
      route: 'introspect',
    });
    expect(await laneOf('/nowhere')).toEqual({ status: 404, lane: 'express', route: undefined });
  });
});
