import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { parseApiUrl, upstreamTarget } from '../../src/proxy/targetUrl.js';
import { acceptedPaths, traversalAttempts } from '../support/pathCorpus.js';

const base = parseApiUrl('http://127.0.0.1:9/v1/');

describe('upstreamTarget', () => {
  it.each(traversalAttempts)('when the path is %j, then it is refused with invalid_request', (attempt) => {
    expect(() => upstreamTarget(base, attempt)).toThrow(
      expect.objectContaining({ code: 'invalid_request', status: 400 }),
    );
  });

  it.each(acceptedPaths)('when the path is %j, then the API receives %j unchanged', (subPath, expected) => {
    expect(upstreamTarget(base, subPath).path).toBe(expected);
  });

  it('when the request has a query, then the logged pathname leaves it out', () => {
    expect(upstreamTarget(base, '/things/1?secret=yes')).toEqual({
      path: '/v1/things/1?secret=yes',
      pathname: '/v1/things/1',
    });
  });

  it('when the API URL is the root, then the path is joined without a double slash', () => {
    const root = parseApiUrl('http://127.0.0.1:9');
    expect(upstreamTarget(root, '/x?y').path).toBe('/x?y');
    expect(upstreamTarget(root, '').path).toBe('/');
  });

  it('when any path built from traversal characters is accepted, then it stays under the base path once resolved', () => {
    const alphabet = [
      '.',
      '..',
      '/',
      '%',
      '2',
      'e',
      'E',
      'f',
      'F',
      '5',
      'c',
      'C',
      '\\',
      '0',
      ';',
      'a',
      '%2',
      '%25',
      '%2e',
      '%2f',
    ];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 12 }), (parts) => {
        const subPath = `/${parts.join('')}`;
        let path: string;
        try {
          path = upstreamTarget(base, subPath).path;
        } catch (error) {
          expect(error).toBeInstanceOf(BrokerError);
          return;
        }
        // Resolve as a WHATWG URL parser would, after decoding as a naive server might, several times.
        let spelling = path;
        for (let round = 0; round < 4; round += 1) {
          const resolved = new URL(spelling.replaceAll('\\', '/'), 'http://127.0.0.1:9');
          expect(resolved.host).toBe('127.0.0.1:9');
          expect(resolved.pathname === '/v1' || resolved.pathname.startsWith('/v1/')).toBe(true);
          try {
            spelling = decodeURIComponent(spelling);
          } catch {
            return;
          }
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('parseApiUrl', () => {
  it('when the API URL has a path with or without a trailing slash, then the base path is the same', () => {
    expect(parseApiUrl('https://api.example.com/v1/')).toEqual({
      origin: 'https://api.example.com',
      basePath: '/v1',
    });
    expect(parseApiUrl('https://api.example.com/v1')).toEqual({
      origin: 'https://api.example.com',
      basePath: '/v1',
    });
  });

  it.each(['ftp://api.example.com/', 'https://api.example.com/v1?key=1', 'https://user:pw@api.example.com/'])(
    'when the API URL is %j, then it is refused at start-up',
    (apiUrl) => {
      expect(() => parseApiUrl(apiUrl)).toThrow(Error);
    },
  );
});
