/**
 * Canonical base64url (RFC 4648 §5, as JWS uses it, RFC 7515 §2): the URL-safe alphabet, no padding, no
 * whitespace, and zero in the unused low bits of the last character (RFC 4648 §3.5). jose's decoder
 * ignores those bits, so without this check up to 16 strings carry one signature: a token could be
 * respelled and still verify, escaping anything keyed by its text (a cache, a log search, a deny list).
 */

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const base64urlChars = /^[A-Za-z0-9_-]*$/;

/** Whether `segment` is the one canonical base64url spelling of the bytes it decodes to. */
export function isCanonicalBase64url(segment: string): boolean {
  if (!base64urlChars.test(segment)) return false;
  const spareBits = [0, -1, 4, 2][segment.length % 4] as number;
  // One character left over holds 6 bits, less than a byte: no encoder produces that length.
  if (spareBits < 0) return false;
  if (spareBits === 0) return true;
  const last = alphabet.indexOf(segment.charAt(segment.length - 1));
  return (last & ((1 << spareBits) - 1)) === 0;
}

/** Whether `token` is a compact JWS of three non-empty, canonical base64url segments (RFC 7515 §7.1). */
export function isCanonicalCompactJws(token: string): boolean {
  const segments = token.split('.');
  return (
    segments.length === 3 && segments.every((segment) => segment.length > 0 && isCanonicalBase64url(segment))
  );
}
