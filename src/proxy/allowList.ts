import type { AllowRule } from './allowRules.js';
import { percentDecode } from './targetUrl.js';

/** Answers whether a method may call a path; built once per upstream, cheap per call. */
export type AllowList = (method: string, path: string) => boolean;

/** The rules as a tree of segments, so that a call walks its path once however many rules there are. */
interface Node {
  literal: Map<string, Node>;
  /** `*`: any one segment. */
  one: Node | undefined;
  /** `**` ends a rule here: whatever follows is allowed. */
  rest: boolean;
  /** A rule ends exactly here. */
  end: boolean;
}

const node = (): Node => ({ literal: new Map(), one: undefined, rest: false, end: false });

/** How a server may read one segment of the path the forwarder sends. */
interface Segment {
  /** Decoded once, as a server decodes a path (a literal holds no "%", so one encoded twice never equals it). */
  once: string;
  /** Some decoding of it holds "/", so a server may see several segments: only `**` matches it. */
  slash: boolean;
  /** Empty before any `;` parameters (a server that drops them sees an empty segment): no `*`. */
  blank: boolean;
}

/** Reads a segment that holds "%": slower, and rare in a path an allow-list opens. */
function readEncoded(raw: string): Segment {
  // targetUrl.ts already refused what does not decode, or decodes to a dot segment or a control character.
  const once = percentDecode(raw) ?? raw;
  let spelling = once;
  let slash = once.includes('/');
  for (let round = 0; round < 4; round += 1) {
    const decoded = percentDecode(spelling) ?? spelling;
    if (decoded === spelling) break;
    spelling = decoded;
    slash ||= spelling.includes('/');
  }
  return { once, slash, blank: spelling.startsWith(';') };
}

function matches(at: Node, segments: readonly string[], index: number): boolean {
  if (at.rest) return true;
  if (index === segments.length) return at.end;
  const raw = segments[index] as string;
  if (!raw.includes('%')) {
    // The common case, without allocating: the segment is what a server reads.
    const literal = at.literal.get(raw);
    if (literal && matches(literal, segments, index + 1)) return true;
    return (
      at.one !== undefined && raw !== '' && raw.charCodeAt(0) !== 0x3b && matches(at.one, segments, index + 1)
    );
  }
  const segment = readEncoded(raw);
  if (segment.slash) return false;
  const literal = at.literal.get(segment.once);
  if (literal && matches(literal, segments, index + 1)) return true;
  return at.one !== undefined && !segment.blank && matches(at.one, segments, index + 1);
}

/**
 * Compiles `UPSTREAM_ALLOW` rules. `path` is the path the forwarder sends, relative to the API URL and
 * already checked by `upstreamTarget` (no dot segments, no empty segments but a last one, valid
 * percent-encoding). Matching is case-sensitive, as paths are (RFC 3986 §6.2.2.1), and on the decoded
 * segment, so `/pl%61nts` is `/plants`; an encoded "/" never counts as a segment boundary for a literal
 * or `*`, and a segment with `;` parameters is a different segment, so no spelling a server reads as
 * another path matches a rule that this path does not.
 */
export function compileAllowList(rules: readonly AllowRule[]): AllowList {
  const trees = new Map<string, Node>();
  for (const rule of rules) {
    let at = trees.get(rule.method) ?? node();
    trees.set(rule.method, at);
    for (const segment of rule.segments) {
      if (segment === '**') {
        at.rest = true;
        break;
      }
      if (segment === '*') {
        at.one ??= node();
        at = at.one;
        continue;
      }
      const next = at.literal.get(segment) ?? node();
      at.literal.set(segment, next);
      at = next;
    }
    if (rule.segments.at(-1) !== '**') at.end = true;
  }
  const anyMethod = trees.get('*');
  return (method, path) => {
    const segments = (path === '' ? '/' : path).slice(1).split('/');
    const own = trees.get(method);
    return (
      (own !== undefined && matches(own, segments, 0)) ||
      (anyMethod !== undefined && matches(anyMethod, segments, 0))
    );
  };
}
