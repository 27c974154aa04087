import type { Span } from '@opentelemetry/api';

/**
 * A query with each value replaced by `REDACTED`, its names kept: the proxy may place the upstream's
 * credential in the API's query (`UPSTREAM_CREDENTIAL_IN=query:<name>`), and a token URL may carry one.
 * The semantic conventions ask for sensitive `url.query` content to be scrubbed this way.
 */
export function redactQuery(query: string): string {
  return query.replace(/=[^&]*/g, '=REDACTED');
}

/** Span attributes that may hold a URL with its query (the semantic conventions' and older names). */
const urlAttributes = ['url.full', 'http.target', 'http.url'];

/**
 * Overwrites a span's URLs and `url.query` with their query values redacted: a server span's (the claim
 * route accepts a key in the query) and an outgoing request's (undici's: the API's or the token
 * endpoint's).
 */
export function scrubSpanUrls(span: Span): void {
  const attributes = (span as Span & { attributes?: Record<string, unknown> }).attributes ?? {};
  for (const name of urlAttributes) {
    const url = attributes[name];
    const at = typeof url === 'string' ? url.indexOf('?') : -1;
    if (at >= 0)
      span.setAttribute(
        name,
        `${(url as string).slice(0, at)}?${redactQuery((url as string).slice(at + 1))}`,
      );
  }
  const query = attributes['url.query'];
  if (typeof query === 'string' && query !== '') span.setAttribute('url.query', redactQuery(query));
}

/** Commands whose arguments are all credentials or settings: only their name is exported. */
const nameOnly = /^(AUTH|HELLO|ACL|CONFIG|MIGRATE)$/i;

/**
 * `db.query.text` of a Redis span: the command and the keys it names, never a value. A script's
 * arguments (`EVAL`, `EVALSHA`) carry encrypted tokens and lock tokens, so only its keys are kept; other
 * commands keep their first argument, which is their key (or channel).
 */
export function redisStatement(command: string, args: readonly unknown[]): string {
  if (nameOnly.test(command) || args.length === 0) return command;
  if (/^EVAL/i.test(command)) {
    const keys = args.slice(2, 2 + Number(args[1]));
    return [command, ...keys.map(String)].join(' ');
  }
  return `${command} ${String(args[0])}`;
}
