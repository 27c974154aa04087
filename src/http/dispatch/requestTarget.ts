/** `scheme://authority` at the start of an absolute-form request target (RFC 9112 §3.2.2). */
const absoluteForm = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * A request target split into what the client addressed (`scheme://authority`, only in absolute form)
 * and the path and query, raw: never decoded or re-encoded, so a proxied query reaches the API byte for
 * byte whichever form the client used. An absolute-form target without a path has the path `/`.
 */
export function splitTarget(target: string): { authority?: string; path: string } {
  const prefix = absoluteForm.exec(target)?.[0];
  if (prefix === undefined) return { path: target };
  const rest = target.slice(prefix.length);
  return { authority: prefix, path: rest.startsWith('/') ? rest : `/${rest}` };
}

/**
 * Whether an absolute-form target names a URL at all (`http://[::1/x`, `http://a:bad/x` do not). Such a
 * target is refused before any router reads it: Node's legacy `url.parse`, under Express and parseurl,
 * throws on some (answered by Express's own HTML 404) and reads others with a path the direct lane would
 * not see (`/:bad/x`), printing a deprecation warning on stderr.
 */
export function validAbsoluteTarget(target: string): boolean {
  const prefix = absoluteForm.exec(target)?.[0];
  return prefix === undefined || URL.canParse(`${prefix}/`);
}
