import { z } from 'zod';
import type { UpstreamConfig } from '../config/index.js';
import { federatedAssertionTypes } from './assertionFile.js';
import { clientAssertionType } from './clientAssertion.js';

/** The grant a token request runs. */
export type Grant = { type: 'client_credentials' } | { type: 'refresh_token'; refreshToken: string };

/** Headers and body of one token request, in the wire format of the configured profile. */
export interface WireRequest {
  headers: Record<string, string>;
  body: string;
}

/** A successful token answer, whatever profile it came in. `expiresIn` is seconds as the upstream said it. */
export interface TokenAnswer {
  accessToken: string;
  tokenType: string;
  expiresIn: number | undefined;
  refreshToken: string | undefined;
  scope: string | undefined;
}

type Credentials = Pick<
  UpstreamConfig,
  | 'profile'
  | 'authMethod'
  | 'clientId'
  | 'clientSecret'
  | 'audience'
  | 'scope'
  | 'resource'
  | 'clientAssertionType'
>;

/**
 * `application/x-www-form-urlencoded` serialisation of one value, as HTML forms and URLSearchParams do it.
 * @see https://www.rfc-editor.org/rfc/rfc6749#appendix-B
 */
function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/**
 * HTTP Basic client authentication. The id and secret are form-urlencoded first and only then joined
 * and base64-encoded; skipping that step breaks every secret holding `:`, `%` or `+`.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64')}`;
}

function defined(entries: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(entries).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}

/**
 * Builds the token request for a grant in the configured profile. With `private_key_jwt`, `clientAssertion`
 * is a fresh signed assertion (one per request, retries included) and no secret is sent; with
 * `tls_client_auth` and `self_signed_tls_client_auth` only `client_id` is, the certificate on the connection.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4.2 client credentials
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6 refresh
 * @see https://www.rfc-editor.org/rfc/rfc8707#section-2 resource
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2 client assertion
 * @see https://www.rfc-editor.org/rfc/rfc8705#section-2 mutual TLS
 */
export function buildTokenRequest(config: Credentials, grant: Grant, clientAssertion?: string): WireRequest {
  const accept = { accept: 'application/json' };
  const json = { ...accept, 'content-type': 'application/json' };
  const isRefresh = grant.type === 'refresh_token';
  const refreshToken = isRefresh ? grant.refreshToken : undefined;

  // Both authenticate with a JWT (RFC 7523 §2.2): one the broker signs, or one the platform issued.
  const privateKeyJwt =
    config.authMethod === 'private_key_jwt' || config.authMethod === 'client_assertion_file';
  // RFC 8705 §2: the TLS handshake authenticates the client; the body names it and holds no secret.
  const byCertificate =
    config.authMethod === 'tls_client_auth' || config.authMethod === 'self_signed_tls_client_auth';
  if (privateKeyJwt && clientAssertion === undefined) {
    throw new TypeError(`buildTokenRequest: ${config.authMethod} needs a client assertion`);
  }
  // RFC 7521 §4.2: the assertion authenticates the client; client_id may accompany it and is sent,
  // as some servers look the client up by it before reading the assertion.
  const assertionFields = {
    client_id: config.clientId,
    client_assertion_type:
      config.authMethod === 'client_assertion_file'
        ? federatedAssertionTypes[config.clientAssertionType ?? 'jwt-bearer']
        : clientAssertionType,
    client_assertion: clientAssertion,
  };

  if (config.profile === 'bloq') {
    // config.ts refuses private_key_jwt with bloq: its camelCase body has no field for an assertion.
    if (privateKeyJwt) throw new TypeError('buildTokenRequest: the bloq profile has no client assertion');
    if (byCertificate) throw new TypeError('buildTokenRequest: the bloq profile needs a client secret');
    const body = isRefresh
      ? { grantType: 'refreshToken', refreshToken }
      : { grantType: 'clientCredentials', clientId: config.clientId, clientSecret: config.clientSecret };
    return { headers: json, body: JSON.stringify(body) };
  }

  const fields = defined(
    isRefresh
      ? { grant_type: 'refresh_token', refresh_token: refreshToken }
      : {
          grant_type: 'client_credentials',
          scope: config.scope,
          audience: config.audience,
          resource: config.resource,
        },
  );
  if (config.profile === 'json') {
    const body = privateKeyJwt
      ? { ...fields, ...assertionFields }
      : byCertificate
        ? { ...fields, client_id: config.clientId }
        : { ...fields, client_id: config.clientId, client_secret: config.clientSecret };
    return { headers: json, body: JSON.stringify(body) };
  }

  const form = { ...accept, 'content-type': 'application/x-www-form-urlencoded' };
  if (byCertificate) {
    return { headers: form, body: new URLSearchParams({ ...fields, client_id: config.clientId }).toString() };
  }
  if (privateKeyJwt) {
    return {
      headers: form,
      body: new URLSearchParams({ ...fields, ...defined(assertionFields) }).toString(),
    };
  }
  if (config.authMethod === 'client_secret_post') {
    const body = new URLSearchParams({
      ...fields,
      client_id: config.clientId,
      client_secret: config.clientSecret,
    });
    return { headers: form, body: body.toString() };
  }
  return {
    headers: { ...form, authorization: basicAuthorization(config.clientId, config.clientSecret) },
    body: new URLSearchParams(fields).toString(),
  };
}

/**
 * A lifetime in seconds: a number or a numeric string (some servers send `"3600"`). Anything else,
 * zero, negative or non-finite, becomes undefined: the answer is still used and the lifetime comes
 * from the JWT `exp` or the configured default instead (see jwtExpiry.ts).
 */
const lifetime = z
  .unknown()
  .optional()
  .transform((value) =>
    typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value,
  )
  .transform((value) =>
    typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined,
  );

const optionalText = z
  .unknown()
  .optional()
  .transform((value) => (typeof value === 'string' && value.length > 0 ? value : undefined));

/** A token answer's fields, under our names; each profile spells them its own way on the wire. */
const answerFields = {
  accessToken: z.string().min(1),
  tokenType: optionalText,
  expiresIn: lifetime,
  refreshToken: optionalText,
  scope: optionalText,
};
type AnswerField = keyof typeof answerFields;
type AnswerFields = { [Field in AnswerField]: z.output<(typeof answerFields)[Field]> };

/** The schema of a token answer whose fields are spelled `wireName(field)`; a parse issue names the wire field. */
function answerSchema(wireName: (field: AnswerField) => string): z.ZodType<TokenAnswer> {
  const fields = Object.keys(answerFields) as AnswerField[];
  const shape = Object.fromEntries(fields.map((field) => [wireName(field), answerFields[field]]));
  return z.object(shape).transform((wire): TokenAnswer => {
    const answer = Object.fromEntries(fields.map((field) => [field, wire[wireName(field)]])) as AnswerFields;
    return { ...answer, tokenType: answer.tokenType ?? 'Bearer' };
  });
}

/** `access_token`, `token_type`, ...: @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1 */
const oauthAnswer = answerSchema((field) => field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`));
/** The bloq profile answers in camelCase: `accessToken`, `tokenType`, ... */
const bloqAnswer = answerSchema((field) => field);

/** The schema a successful answer of this profile must satisfy. */
export function tokenAnswerSchema(profile: UpstreamConfig['profile']): z.ZodType<TokenAnswer> {
  return profile === 'bloq' ? bloqAnswer : oauthAnswer;
}

/**
 * An OAuth error answer. Descriptions are cut short: they come from a server we do not control and end
 * up in our logs.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */
export const oauthErrorSchema = z.object({
  error: z.string().regex(/^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/),
  error_description: z
    .unknown()
    .optional()
    .transform((value) =>
      typeof value === 'string' && value.length > 0
        ? value.replace(/[^\x20-\x7E]/g, '?').slice(0, 300)
        : undefined,
    ),
});
