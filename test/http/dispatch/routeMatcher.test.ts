import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  directTargetFor,
  directTargets,
  type Route,
  routeFor,
  routePath,
  splitTarget,
} from '../../../src/http/dispatch/routeMatcher.js';

/** The matcher reads only the target and the method of a request. */
const request = (url: string, method = 'GET') => ({ url, method }) as IncomingMessage;

const routes: Route[] = [
  {
    name: 'clientToken',
    methods: 'all',
    path: '/api/client-token',
    match: 'exact',
    lane: 'direct',
    chain: [],
  },
  { name: 'proxy', methods: 'all', path: '/api/proxy/a', match: 'mount', lane: 'direct', chain: [] },
  { name: 'proxy', methods: 'all', path: '/api/proxy', match: 'mount', lane: 'express', chain: [] },
  { name: 'claim', methods: ['POST'], path: '/api/auth/claim', match: 'exact', lane: 'express', chain: [] },
  { name: 'healthz', methods: ['GET'], path: '/healthz', match: 'exact', lane: 'express', chain: [] },
  { name: 'static', methods: ['GET'], path: '/', match: 'exact', lane: 'express', chain: [] },
];

describe('splitTarget', () => {
  it('when the target is in origin form, then it is all path, raw', () => {
    expect(splitTarget('/a/%2e%2E/b?q={"x":1}')).toEqual({ path: '/a/%2e%2E/b?q={"x":1}' });
  });

  it('when the target is in absolute form, then scheme and authority are split from the path and query', () => {
    expect(splitTarget('http://broker.example:8080/api/proxy/x?y=1')).toEqual({
      authority: 'http://broker.example:8080',
      path: '/api/proxy/x?y=1',
    });
  });

  it('when an absolute-form target has no path, then the path is /', () => {
    expect(splitTarget('https://broker.example')).toEqual({ authority: 'https://broker.example', path: '/' });
    expect(splitTarget('https://broker.example?x')).toEqual({
      authority: 'https://broker.example',
      path: '/?x',
    });
  });
});

describe('routePath', () => {
  it('when a path has capitals, a trailing slash or a query, then it is compared as Express compares it', () => {
    expect(routePath(request('/API/Client-Token/?x=1'))).toBe('/api/client-token');
    expect(routePath(request('http://broker.example/Healthz'))).toBe('/healthz');
  });

  it('when a path ends in two slashes, then only one is forgiven', () => {
    expect(routePath(request('/healthz//'))).toBe('/healthz/');
  });

  it('when the path is the root, then it stays the root', () => {
    expect(routePath(request('/'))).toBe('/');
  });
});

describe('routeFor', () => {
  const name = (url: string, method?: string) => routeFor(routes, request(url, method))?.name;

  it('when a path is spelled in any of the ways Express accepts, then it names the route', () => {
    expect(name('/api/client-token')).toBe('clientToken');
    expect(name('/API/CLIENT-TOKEN/')).toBe('clientToken');
    expect(name('http://broker.example/api/client-token?x')).toBe('clientToken');
    expect(name('/api/client-token#top')).toBe('clientToken');
  });

  it('when a route takes some methods only, then another method names no route, and GET covers HEAD', () => {
    expect(name('/api/auth/claim', 'POST')).toBe('claim');
    expect(name('/api/auth/claim', 'GET')).toBeUndefined();
    expect(name('/healthz', 'HEAD')).toBe('healthz');
  });

  it('when a path is under a mount, then the mount names it; under an exact route, nothing does', () => {
    expect(name('/api/proxy/a/items')).toBe('proxy');
    expect(name('/api/proxy/unknown/items')).toBe('proxy');
    expect(name('/api/proxy')).toBe('proxy');
    expect(name('/api/proxyx')).toBeUndefined();
    expect(name('/api/client-token/introspect', 'POST')).toBeUndefined();
  });

  it('when two routes fit, then the first in the table wins, as in Express', () => {
    expect(routeFor(routes, request('/api/proxy/a/x'))?.path).toBe('/api/proxy/a');
    expect(routeFor(routes, request('/api/proxy/b/x'))?.path).toBe('/api/proxy');
  });
});

describe('directTargets', () => {
  const targets = directTargets(routes);
  const direct = (url: string, method = 'GET') => directTargetFor(targets, url, method)?.route.path;

  it('when the table is read, then only the direct routes get a target', () => {
    expect(targets.map(({ route }) => route.path)).toEqual(['/api/client-token', '/api/proxy/a']);
  });

  it('when an exact route is asked for exactly, with or without a query, then the direct lane takes it', () => {
    expect(direct('/api/client-token')).toBe('/api/client-token');
    expect(direct('/api/client-token?upstreams=a')).toBe('/api/client-token');
  });

  it('when an exact route is spelled any other way, then the direct lane leaves it', () => {
    for (const url of [
      '/API/client-token',
      '/api/client-token/',
      '/api/client-tokens',
      'http://broker.example/api/client-token',
      '/api/client-token#x',
      '/api/client-token?a b',
    ]) {
      expect(direct(url), url).toBeUndefined();
    }
  });

  it('when a mount is followed by a path in any letter case, then the direct lane takes it', () => {
    expect(direct('/api/proxy/a/items')).toBe('/api/proxy/a');
    expect(direct('/API/PROXY/A/x?y')).toBe('/api/proxy/a');
  });

  it('when a mount has no path after it, or an unusual character, then the direct lane leaves it', () => {
    for (const url of [
      '/api/proxy/a',
      '/api/proxy/a/',
      '/api/proxy/a/?x',
      '/api/proxy/ab/x',
      '/api/proxy/a/x#y',
    ]) {
      expect(direct(url), url).toBeUndefined();
    }
  });
});
