/**
 * Web origins (RFC 6454): scheme, host and port. The browser writes `Origin`; we compare its
 * serialisation after the same normalisation the browser applies, so `HTTPS://App.Example.com:443`
 * and `https://app.example.com` are one origin.
 */

export type OriginPattern =
  | { kind: 'exact'; origin: string }
  | { kind: 'wildcard'; protocol: string; suffix: string; port: string };

/**
 * The serialised origin of an absolute http(s) URL that has no path, query, fragment or credentials,
 * or undefined. Lower-cases scheme and host, drops the default port, turns IDNs into punycode.
 */
export function normalizeOrigin(input: string): string | undefined {
  const url = parseHttpUrl(input);
  if (!url) return undefined;
  if (
    (url.pathname !== '/' && url.pathname !== '') ||
    url.search ||
    url.hash ||
    url.username ||
    url.password
  ) {
    return undefined;
  }
  // WHATWG URL would accept "https://example.com/" and "https://example.com" alike; only the bare
  // form or a single trailing slash is an origin.
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]+\/?$/i.test(input.trim())) return undefined;
  return url.origin;
}

/** The origin of any http(s) URL (used for `Referer`), or undefined. */
export function originOfUrl(input: string): string | undefined {
  return parseHttpUrl(input)?.origin;
}

function parseHttpUrl(input: string): URL | undefined {
  if (!URL.canParse(input)) return undefined;
  const url = new URL(input);
  return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
}

/** An `ALLOWED_ORIGINS` entry: an exact origin, or `scheme://*.domain[:port]` matching subdomains only. */
export function parseOriginPattern(entry: string): OriginPattern | undefined {
  const wildcard = /^(https?):\/\/\*\.([^/:?#*]+)(?::(\d{1,5}))?\/?$/i.exec(entry.trim());
  if (wildcard) {
    const [, scheme = '', domain = '', port = ''] = wildcard;
    // Normalise the domain through the URL parser, so IDNs and case compare as the browser sends them.
    const probe = normalizeOrigin(`${scheme}://${domain}${port ? `:${port}` : ''}`);
    if (!probe) return undefined;
    const url = new URL(probe);
    if (!url.hostname.includes('.') && url.hostname !== 'localhost') return undefined;
    return { kind: 'wildcard', protocol: url.protocol, suffix: `.${url.hostname}`, port: url.port };
  }
  // WHATWG URL takes `*` in a host, so `https://*example.com` (the dot forgotten) would pass as an exact
  // origin that no browser ever sends.
  const origin = entry.includes('*') ? undefined : normalizeOrigin(entry);
  return origin ? { kind: 'exact', origin } : undefined;
}

/**
 * What a wildcard may stand for: one or more DNS labels (RFC 1123 §2.1 letters, digits, hyphens; the
 * underscore browsers also accept). WHATWG URL lets `*`, `!` or `$` through in a host, so without this
 * `https://*.example.com` itself, or `https://$.example.com`, would pass as a subdomain.
 */
const hostLabels = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/;

export interface OriginPolicy {
  /** Whether a (normalised) origin may obtain client tokens. `null` is never allowed. */
  isAllowed(origin: string): boolean;
}

export function createOriginPolicy(entries: readonly string[]): OriginPolicy {
  const exact = new Set<string>();
  const wildcards: Extract<OriginPattern, { kind: 'wildcard' }>[] = [];
  for (const entry of entries) {
    const pattern = parseOriginPattern(entry);
    if (!pattern) throw new Error(`not an origin pattern: ${entry}`);
    if (pattern.kind === 'exact') exact.add(pattern.origin);
    else wildcards.push(pattern);
  }
  return {
    isAllowed(origin) {
      if (exact.has(origin)) return true;
      if (wildcards.length === 0) return false;
      const normalized = normalizeOrigin(origin);
      if (!normalized || normalized !== origin) return false;
      const url = new URL(normalized);
      return wildcards.some(
        (pattern) =>
          url.protocol === pattern.protocol &&
          url.port === pattern.port &&
          url.hostname.endsWith(pattern.suffix) &&
          hostLabels.test(url.hostname.slice(0, -pattern.suffix.length)),
      );
    },
  };
}

/**
 * The origin a browser request comes from: `Origin`, else the origin of `Referer`.
 * Returns `'null'` for an opaque origin, which no policy allows, and undefined when neither header is
 * usable.
 */
export function requestOrigin(headers: {
  origin?: string | undefined;
  referer?: string | undefined;
}): string | undefined {
  const origin = headers.origin?.trim();
  if (origin) return origin === 'null' ? 'null' : (normalizeOrigin(origin) ?? 'null');
  const referer = headers.referer?.trim();
  return referer ? originOfUrl(referer) : undefined;
}

/** What ALLOWED_ORIGINS means in development when it is empty: the broker's own origin, for its demo page. */
export function devOrigins(port: number): string[] {
  return [`http://localhost:${port}`, `http://127.0.0.1:${port}`];
}
