import { BrokerError } from '../errors.js';

/** Where proxied requests go: the API's origin and the base path every request stays under. */
export interface ApiBase {
  /** `scheme://host[:port]`, the only host requests are ever sent to. */
  origin: string;
  /** The API URL's path without its trailing slash (`''` for the root). */
  basePath: string;
}

/** The upstream request target for one proxied request. */
export interface UpstreamTarget {
  /** Path and query as sent upstream; the query is the client's, byte for byte. */
  path: string;
  /** Path without the query, for logs (a query may carry data). */
  pathname: string;
}

/**
 * Splits `UPSTREAM_API_URL` into origin and base path. A query, fragment or userinfo in it is a
 * configuration mistake (they could not be combined with every client's own target), so it throws.
 */
export function parseApiUrl(apiUrl: string): ApiBase {
  const url = new URL(apiUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error('the API URL must be http or https');
  if (url.search || url.hash || url.username || url.password) {
    throw new Error('the API URL may not hold a query, a fragment or credentials');
  }
  return { origin: url.origin, basePath: url.pathname.replace(/\/+$/, '') };
}

/** The client's query as it sent it, without the `?`; undefined when it sent none. */
export function clientQuery(target: UpstreamTarget): string | undefined {
  return target.path.length > target.pathname.length
    ? target.path.slice(target.pathname.length + 1)
    : undefined;
}

/** Rounds of percent-decoding a segment is checked through: catches double and triple encoding. */
const maxDecodeRounds = 4;

// RFC 3986 §3.3: a path is segments of pchar (unreserved, pct-encoded, sub-delims, ":" and "@") joined by "/".
const pathChars = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;
// RFC 3986 §3.4 allows pchar, "/" and "?", but clients also send "[", "]", "|" or "{" unencoded, so a query
// may be any visible ASCII except "#"; it is never decoded here, only passed on unchanged.
const queryChars = /^[\x21\x22\x24-\x7e]*$/;

// ignoreBOM keeps a decoded U+FEFF as a character, as a server would see it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Controls (NUL, CR, LF, ...) and the backslash that Windows servers and some URL parsers read as "/". */
function hasForbiddenCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f || code === 0x5c) return true;
  }
  return false;
}

function invalid(detail: string): BrokerError {
  return new BrokerError('invalid_request', { detail });
}

/**
 * Decodes each run of `%XX` as UTF-8, leaving a stray `%` as it is. Returns undefined when the bytes are
 * not valid UTF-8 (this includes overlong forms such as `%C0%AE` for "."), which is then refused.
 */
export function percentDecode(value: string): string | undefined {
  try {
    return value.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) =>
      utf8.decode(Uint8Array.from(run.slice(1).split('%'), (hex) => Number.parseInt(hex, 16))),
    );
  } catch {
    return undefined;
  }
}

/**
 * Whether one spelling of a segment is harmless to a server that decodes it that far. Its pieces (split
 * at a decoded "/") may not be dot segments (RFC 3986 §3.3, §5.2.4), counting `..;x` (Tomcat's path
 * parameters) and `.. ` or `...` (which Windows servers trim to `..`); a decoded "/" may only sit between
 * two non-empty pieces (`group%2Fproject` passes, `%2F%2Fevil.com` does not).
 */
function isHarmless(spelling: string): boolean {
  if (hasForbiddenCharacter(spelling)) return false;
  const pieces = spelling.split('/');
  if (pieces.length > 1 && pieces.includes('')) return false;
  return pieces.every((piece) => !/^\.[. ]*$/.test(piece.split(';')[0] ?? ''));
}

/** Checks the raw segment and every decoding of it, until decoding changes nothing. */
function checkSegment(segment: string): void {
  // Most segments: nothing to decode, and (with pathChars already checked) only a leading "." could harm.
  if (!segment.includes('%') && segment.charCodeAt(0) !== 0x2e) return;
  let spelling = segment;
  for (let round = 0; ; round += 1) {
    if (!isHarmless(spelling))
      throw invalid('the path may not contain dot segments, backslashes or control characters');
    const decoded = percentDecode(spelling);
    if (decoded === undefined) throw invalid('the path is not valid percent-encoded UTF-8');
    if (decoded === spelling) return;
    if (round === maxDecodeRounds) throw invalid('the path is encoded too many times');
    spelling = decoded;
  }
}

/**
 * The path part of the request target after `/api/proxy` (`subPath`, raw, never decoded: `/things/1?x=1`
 * or `''`), once checked: refuses anything that could leave the API's base path or name another host once
 * some server along the way decodes it. The rule: the path may use only RFC 3986 path characters; no
 * segment may be empty except the last (so no `//host`); no segment, raw or after up to four rounds of
 * percent-decoding, may be a dot segment or hold a backslash, a control character (`%00`) or an encoded
 * "/" that opens an empty piece. The query is not interpreted: the API decides what it means.
 *
 * @throws BrokerError `invalid_request`
 * @see https://www.rfc-editor.org/rfc/rfc3986#section-3.3
 */
export function checkedPath(subPath: string): { path: string; query: string | undefined } {
  const queryAt = subPath.indexOf('?');
  const path = queryAt === -1 ? subPath : subPath.slice(0, queryAt);
  const query = queryAt === -1 ? undefined : subPath.slice(queryAt + 1);
  if (path !== '' && !path.startsWith('/')) throw invalid('the proxied path must start with "/"');
  if (!pathChars.test(path)) throw invalid('the path holds characters that must be percent-encoded');
  if (query !== undefined && !queryChars.test(query))
    throw invalid('the query holds characters that must be percent-encoded');

  const segments = path.split('/').slice(1);
  segments.forEach((segment, index) => {
    if (segment === '' && index < segments.length - 1)
      throw invalid('the path may not contain empty segments');
    checkSegment(segment);
  });
  return { path, query };
}

/**
 * Joins the part of the request target after `/api/proxy` onto the API's base path, once `checkedPath`
 * accepted it.
 *
 * @throws BrokerError `invalid_request`
 */
export function upstreamTarget(base: ApiBase, subPath: string): UpstreamTarget {
  const { path, query } = checkedPath(subPath);
  const pathname = `${base.basePath}${path}` || '/';
  return { path: query === undefined ? pathname : `${pathname}?${query}`, pathname };
}
