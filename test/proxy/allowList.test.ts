import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { compileAllowList } from '../../src/proxy/allowList.js';
import { type AllowRule, parseAllowRules } from '../../src/proxy/allowRules.js';
import { checkedPath } from '../../src/proxy/targetUrl.js';
import { acceptedPaths, ruleSpellings, traversalAttempts } from '../support/pathCorpus.js';

const rules = parseAllowRules(
  'GET /plants/*, GET /species/**, POST /search, * /open/*/x, get /',
) as AllowRule[];
const allowed = compileAllowList(rules);

/** What a path means to a server that reads it one way: segments after that server's decoding. */
type Reading = (path: string) => string[];

/** Decodes as a lenient server does: each run of valid `%XX`, leaving a stray `%` as it is. */
const decodeOnce = (value: string): string =>
  value.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
const decodeFully = (value: string): string => {
  let spelling = value;
  for (let round = 0; round < 5; round += 1) spelling = decodeOnce(spelling);
  return spelling;
};
const segmentsOf = (path: string) => path.replace(/^\//, '').split('/');

/** Ways servers read a path: decoded once or until nothing changes, `;` parameters dropped (Tomcat) first. */
const readings: Record<string, Reading> = {
  'decoded once': (path) => segmentsOf(decodeOnce(path)),
  'decoded fully': (path) => segmentsOf(decodeFully(path)),
  'parameters dropped, then decoded': (path) =>
    segmentsOf(
      decodeOnce(
        path
          .split('/')
          .map((segment) => segment.split(';')[0])
          .join('/'),
      ),
    ),
};

/** The rules read naively, as regular expressions over the segments a server sees. */
function oracle(method: string, segments: string[]): boolean {
  const path = `/${segments.join('/')}`;
  return rules.some((rule) => {
    if (rule.method !== '*' && rule.method !== method) return false;
    const pattern = rule.segments
      .map((segment) => (segment === '*' ? '[^/]+' : segment === '**' ? '' : segment.replace(/[.]/g, '\\.')))
      .join('/');
    const rest = rule.segments.at(-1) === '**';
    return new RegExp(rest ? `^/${pattern.replace(/\/$/, '')}(?:/.*)?$` : `^/${pattern}$`).test(path);
  });
}

/** The allow-list's answer for a raw target, after the forwarder's own check; undefined when that refuses it. */
function verdict(method: string, target: string): boolean | undefined {
  try {
    return allowed(method, checkedPath(target).path);
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return undefined;
  }
}

describe('parseAllowRules', () => {
  it('when rules are well formed, then each has its upper-cased method and segments', () => {
    expect(parseAllowRules('get /a/*, * /b/**,POST /')).toEqual([
      { method: 'GET', segments: ['a', '*'] },
      { method: '*', segments: ['b', '**'] },
      { method: 'POST', segments: [''] },
    ]);
  });

  it.each([
    ['GET /a,', 'is empty'],
    ['GET', 'must be a method, one space and a path'],
    ['GET /a b', 'must be a method, one space and a path'],
    ['G(T /a', 'has no valid method'],
    ['GET a/b', 'starting with "/"'],
    ['GET /**/a', '"**" only as its last segment'],
    ['GET /a//b', 'empty segment'],
    ['GET /a/../b', 'dot segment'],
    ['GET /a%2Fb', 'neither a plain segment'],
    ['GET /a;x', 'neither a plain segment'],
    ['GET /a*', 'neither a plain segment'],
  ])('when the rules are %j, then the problem says it %s and shows an example', (value, why) => {
    const problem = parseAllowRules(value);
    expect(problem).toEqual(expect.stringContaining(why));
    expect(problem).toEqual(expect.stringContaining('GET /plants/*'));
  });
});

describe('compileAllowList', () => {
  it.each([
    ['GET', '/plants/1', true],
    ['GET', '/pl%61nts/1', true],
    ['GET', '/plants/1;x=y', true],
    ['GET', '/species', true],
    ['GET', '/species/a/b%2Fc', true],
    ['POST', '/search', true],
    ['PATCH', '/open/any/x', true],
    ['GET', '/', true],
    ['GET', '', true],
    ['HEAD', '/plants/1', false],
    ['DELETE', '/plants/1', false],
    ['GET', '/plants', false],
    ['GET', '/plants/', false],
    ['GET', '/plants/1/2', false],
    ['GET', '/PLANTS/1', false],
    ['GET', '/plants;x/1', false],
    ['GET', '/plants/a%2Fb', false],
    ['GET', '/plants/a%252Fb', false],
    ['GET', '/pl%2561nts/1', false],
    ['GET', '/plants/;x', false],
    ['POST', '/search/', false],
    ['GET', '/open/a/b/x', false],
  ])('when %s %s is asked, then the answer is %s', (method, path, expected) => {
    expect(allowed(method, path)).toBe(expected);
  });

  it.each(traversalAttempts)(
    'when the path is the attempt %j, then the forwarder check refuses it first',
    (attempt) => {
      expect(verdict('GET', attempt)).toBeUndefined();
    },
  );

  it.each([...ruleSpellings, ...acceptedPaths.map(([path]) => path)])(
    'when the path is %j and the allow-list opens it, then every reading of it is opened by a rule',
    (spelling) => {
      for (const method of ['GET', 'POST', 'DELETE']) {
        if (verdict(method, spelling) !== true) continue;
        const path = checkedPath(spelling).path;
        for (const [name, read] of Object.entries(readings)) {
          expect([method, spelling, name, oracle(method, read(path))]).toEqual([
            method,
            spelling,
            name,
            true,
          ]);
        }
      }
    },
  );

  it('when any path built from tricky pieces is opened, then every reading of it is opened by a rule', () => {
    const pieces = [
      'plants',
      'species',
      'search',
      'open',
      'x',
      '1',
      'PLANTS',
      'pl%61nts',
      'pl%2561nts',
      '%2F',
    ];
    const extra = ['%252F', ';', ';x', '%3B', '.', '..', '%2e', '%2E', 'a', '%25', '%', '/', '//'];
    fc.assert(
      fc.property(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
        fc.array(fc.constantFrom(...pieces, ...extra), { maxLength: 8 }),
        (method, parts) => {
          const target = `/${parts.join('')}`;
          if (verdict(method, target) !== true) return;
          const path = checkedPath(target).path;
          for (const read of Object.values(readings)) {
            expect(oracle(method, read(path))).toBe(true);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('when 50 rules are compiled, then a call costs about what it costs with one rule', () => {
    const rule = (i: number) => `${i % 2 ? 'GET' : 'POST'} /r${i}/*/items/**`;
    const one = compileAllowList(parseAllowRules(rule(49)) as AllowRule[]);
    const fifty = compileAllowList(
      parseAllowRules(Array.from({ length: 50 }, (_, i) => rule(i)).join(', ')) as AllowRule[],
    );
    // Paths the one rule, the last of the 50, opens too: both walk the whole path, and a scan would try 50.
    const paths = Array.from({ length: 50 }, (_, i) => `/r49/abc${i}/items/x`);
    /** The fastest of several rounds, so that what else the machine runs weighs less. */
    const cost = (check: typeof one) => {
      let best = Number.POSITIVE_INFINITY;
      for (let round = 0; round < 7; round += 1) {
        const started = performance.now();
        for (let i = 0; i < 20_000; i += 1)
          if (!check('GET', paths[i % 50] as string)) throw new Error('refused');
        best = Math.min(best, performance.now() - started);
      }
      return best;
    };
    cost(one);
    cost(fifty);
    // A tree walks the path once: rules add lookups in a Map, not a pass each (which would be about 50×).
    // About 1 µs a call here, idle; a proxied call costs about 230 µs of CPU (docs/performance.md).
    expect(cost(fifty) / cost(one)).toBeLessThan(3);
  });
});
