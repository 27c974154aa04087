import type { OutgoingHttpHeaders } from 'node:http';

/**
 * `UPSTREAM_[<NAME>_]CREDENTIAL_IN`: where the API wants its credential. `authorization` sends
 * `Authorization: Bearer <credential>` (RFC 6750 §2.1); `header:<Name>` sends the bare credential in that
 * field (`x-api-key`); `query:<param>` appends it to the query (Trefle's `?token=`, Google's `?key=`).
 */
export type CredentialPlacement =
  | { in: 'authorization' }
  | { in: 'header'; name: string }
  | { in: 'query'; param: string };

export const credentialPlacementExample = 'header:x-api-key';

// RFC 9110 §5.1 field name (token).
const fieldName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// A query parameter name written as the API reads it: unreserved characters, never needing encoding.
const paramName = /^[A-Za-z0-9\-._~]+$/;
/** Fields the broker owns: the credential cannot go there without being stripped or overwritten. */
const reservedFields = new Set([
  'host',
  'cookie',
  'content-length',
  'content-type',
  'x-client-token',
  'dpop',
]);

export function parseCredentialPlacement(value: string): CredentialPlacement | string {
  const text = value.trim();
  if (text.toLowerCase() === 'authorization') return { in: 'authorization' };
  const [kind, name = ''] = [text.slice(0, text.indexOf(':')), text.slice(text.indexOf(':') + 1)];
  if (kind === 'header' && fieldName.test(name)) {
    const lower = name.toLowerCase();
    if (lower === 'authorization') return { in: 'authorization' };
    if (reservedFields.has(lower) || lower.startsWith('x-forwarded-'))
      return `"${name}" is a field the broker sets itself; choose the API's own credential field`;
    return { in: 'header', name: lower };
  }
  if (kind === 'query' && paramName.test(name)) return { in: 'query', param: name };
  return `must be authorization, header:<Field-Name> or query:<param>, e.g. ${credentialPlacementExample} or query:token`;
}

/**
 * Moves the credential from `Authorization: Bearer`, where the forwarder puts it, to the field the API
 * reads; a client's own value of that field is overwritten. For `query:` the header only goes.
 */
export function placeCredential(
  placement: Exclude<CredentialPlacement, { in: 'authorization' }>,
  headers: OutgoingHttpHeaders,
  credential: string,
): void {
  delete headers.authorization;
  if (placement.in === 'header') headers[placement.name] = credential;
}

/**
 * The API's response headers without the query credential: `Location` and `Content-Location` lose the
 * parameter, and any other field that holds the credential (a `Link` to the next page) is dropped whole.
 */
export function scrubResponseHeaders(headers: OutgoingHttpHeaders, param: string, credential: string): void {
  const encoded = encodeURIComponent(credential);
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || typeof value === 'number') continue;
    const values = [value].flat();
    if (name === 'location' || name === 'content-location') {
      const rewritten = values.map((item) => withoutQueryCredential(item, param, credential));
      if (rewritten.every((item) => item !== undefined)) {
        headers[name] = rewritten.join(', ');
        continue;
      }
    } else if (!values.some((item) => item.includes(credential) || item.includes(encoded))) {
      continue;
    }
    delete headers[name];
  }
}

/**
 * The query without any `param` the client sent (removed, so the API only ever reads the broker's), then
 * the broker's credential: `?<rest>&token=<credential>`. The rest of the query is kept byte for byte.
 */
export function queryWithCredential(query: string | undefined, param: string, credential: string): string {
  const kept =
    query === undefined
      ? []
      : query.split('&').filter((pair) => pair !== '' && !isParam(pair.split('=', 1)[0] as string, param));
  kept.push(`${param}=${encodeURIComponent(credential)}`);
  return kept.join('&');
}

/** A name as sent, or percent-encoded (`%74oken`), is the same parameter to the API. */
function isParam(name: string, param: string): boolean {
  if (name === param) return true;
  if (!name.includes('%')) return false;
  try {
    return decodeURIComponent(name.replaceAll('+', ' ')) === param;
  } catch {
    return false;
  }
}

/**
 * A URL the API sent back (`Location`, `Content-Location`) without the query credential: the parameter
 * is removed wherever it appears, and any other occurrence of the credential (a value copied elsewhere)
 * drops the whole URL, answered as undefined.
 */
export function withoutQueryCredential(value: string, param: string, credential: string): string | undefined {
  const queryAt = value.indexOf('?');
  if (queryAt === -1) return value.includes(credential) ? undefined : value;
  const hashAt = value.indexOf('#', queryAt);
  const end = hashAt === -1 ? value.length : hashAt;
  const kept = value
    .slice(queryAt + 1, end)
    .split('&')
    .filter((pair) => pair !== '' && !isParam(pair.split('=', 1)[0] as string, param));
  const rewritten = `${value.slice(0, queryAt)}${kept.length > 0 ? `?${kept.join('&')}` : ''}${value.slice(end)}`;
  return rewritten.includes(credential) || rewritten.includes(encodeURIComponent(credential))
    ? undefined
    : rewritten;
}
