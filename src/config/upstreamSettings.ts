import { z } from 'zod';
import { type AllowRule, allowRulesExample, parseAllowRules } from '../proxy/allowRules.js';
import {
  type CredentialPlacement,
  credentialPlacementExample,
  parseCredentialPlacement,
} from '../proxy/credentialPlacement.js';
import { type FederatedAssertionType, parseFederatedAssertion } from '../upstream/assertionFile.js';
import { type ClientKey, parseClientKey } from '../upstream/clientAssertion.js';
import { parseTokenQuota, type TokenQuota } from '../upstream/quota.js';
import { loadTlsClientIdentity, type TlsClientIdentity } from '../upstream/tlsClientIdentity.js';
import { emptyToUndefined, int, optionalString, optionalUrl } from './fields.js';

/** A value parsed by `parse`, which answers either the value or a problem to report. */
const parsedBy = <T extends object>(parse: (value: string) => T | string) =>
  z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value, ctx) => {
        const parsed = parse(value);
        if (typeof parsed === 'string') {
          ctx.addIssue({ code: 'custom', message: parsed });
          return z.NEVER;
        }
        return parsed;
      })
      .optional(),
  );

/** The authorization server the broker gets tokens from, and the API those tokens open. */
export const upstreamSchema = z.object({
  UPSTREAM_ISSUER: optionalUrl.meta({
    description: 'issuer to discover the token endpoint from (RFC 8414 / OpenID discovery)',
    example: 'https://auth.example.com',
  }),
  UPSTREAM_TOKEN_URL: optionalUrl.meta({
    description: 'the token endpoint itself (instead of `UPSTREAM_ISSUER`)',
    example: 'https://auth.example.com/oauth/token',
  }),
  UPSTREAM_CLIENT_ID: optionalString.meta({
    description: "the broker's client id at the upstream",
    example: 'web-app',
  }),
  UPSTREAM_CLIENT_SECRET: optionalString.meta({
    description: "the broker's client secret at the upstream (not with `private_key_jwt`)",
    example: 'the-secret-your-authorization-server-issued',
  }),
  UPSTREAM_PROFILE: z
    .preprocess(emptyToUndefined, z.enum(['rfc6749', 'json', 'bloq']).default('rfc6749'))
    .meta({
      description:
        "wire format of the token request: `rfc6749` (form body), `json` (Auth0 and publiq, the Flemish cultural-events platform, take JSON) or `bloq` (Bloq's camelCase JSON)",
      example: 'json',
    }),
  UPSTREAM_AUTH_METHOD: z
    .preprocess(
      emptyToUndefined,
      z
        .enum([
          'client_secret_basic',
          'client_secret_post',
          'private_key_jwt',
          'client_assertion_file',
          'tls_client_auth',
          'self_signed_tls_client_auth',
        ])
        .default('client_secret_basic'),
    )
    .meta({
      description:
        '`client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523, see [private_key_jwt](upstream.md#authenticating-with-a-private-key-private_key_jwt)), `client_assertion_file`: a JWT the platform issues to the workload, read from `UPSTREAM_CLIENT_ASSERTION_FILE` (see [federated assertions](upstream.md#authenticating-with-a-platform-issued-jwt-client_assertion_file)), or `tls_client_auth` / `self_signed_tls_client_auth`: the certificate of `UPSTREAM_TLS_CERT_FILE` (RFC 8705, see [mutual TLS](upstream.md#authenticating-with-a-client-certificate-mutual-tls))',
      example: 'client_secret_post',
    }),
  UPSTREAM_CLIENT_KEY: parsedBy(parseClientKey).meta({
    description:
      "`private_key_jwt` only: the broker's private JWK (or a JWK Set of one): Ed25519, P-256 or RSA ≥ 2048 bits",
    example: '"$(npx token-broker keys generate --alg ES256)"',
  }),
  UPSTREAM_CLIENT_ASSERTION_FILE: optionalString.meta({
    description:
      '`client_assertion_file` only: the file holding the JWT to authenticate with (a projected service-account token, a JWT-SVID, a workload-identity token file), read for every token request',
    example: '/var/run/secrets/tokens/broker-token',
  }),
  UPSTREAM_CLIENT_ASSERTION_TYPE: z
    .preprocess(emptyToUndefined, z.enum(['jwt-bearer', 'jwt-spiffe']).default('jwt-bearer'))
    .meta({
      description:
        '`client_assertion_file` only: `client_assertion_type` sent, `jwt-bearer` (RFC 7523) or `jwt-spiffe` (the SPIFFE client authentication draft)',
      example: 'jwt-spiffe',
    }),
  UPSTREAM_TLS_CERT_FILE: optionalString.meta({
    description:
      '`tls_client_auth` and `self_signed_tls_client_auth` only: the PEM client certificate (a chain may follow it) presented to the token endpoint and to the API; re-read when it changes',
    example: '/var/run/secrets/broker-tls/tls.crt',
  }),
  UPSTREAM_TLS_KEY_FILE: optionalString.meta({
    description:
      'with `UPSTREAM_TLS_CERT_FILE`: its unencrypted PEM private key, which must match it; re-read when it changes',
    example: '/var/run/secrets/broker-tls/tls.key',
  }),
  UPSTREAM_TLS_CA_FILE: optionalString.meta({
    description:
      'with `UPSTREAM_TLS_CERT_FILE`: PEM certificates of the CAs that verify the token endpoint and the API, in place of the system roots. Empty: the system roots',
    example: '/var/run/secrets/broker-tls/ca.crt',
  }),
  UPSTREAM_CLIENT_ASSERTION_AUDIENCE: z
    .preprocess(emptyToUndefined, z.enum(['token_endpoint', 'issuer']).default('token_endpoint'))
    .meta({
      description: '`aud` of the client assertions: `token_endpoint` or `issuer` (needs `UPSTREAM_ISSUER`)',
      example: 'issuer',
    }),
  UPSTREAM_TOKEN_QUOTA: parsedBy(parseTokenQuota).meta({
    description:
      'budget of upstream token requests, `<n>/minute`, `/hour`, `/day` or `/month` in UTC windows (see [quota](upstream.md#upstream-token-quota)). Empty: no limit',
    example: '1000/day',
  }),
  UPSTREAM_CALL_QUOTA: parsedBy(parseTokenQuota).meta({
    description:
      'budget of proxied calls to this upstream, `<n>/minute`, `/hour`, `/day` or `/month` in UTC windows, fleet-wide with Redis; past it `429 call_quota_exhausted` (see [fleet](fleet.md#call-budgets-and-quotas)). Empty: no limit',
    example: '100000/day',
  }),
  UPSTREAM_AUDIENCE: optionalString.meta({
    description: '`audience` sent with the grant (Auth0)',
    example: 'https://api.example.com',
  }),
  UPSTREAM_SCOPE: optionalString.meta({
    description: 'space-separated scopes sent with the grant',
    example: 'read:things write:things',
  }),
  UPSTREAM_RESOURCE: optionalUrl.meta({
    description: 'resource indicator sent with the grant (RFC 8707)',
    example: 'https://api.example.com',
  }),
  UPSTREAM_API_URL: optionalUrl.meta({
    description: 'base URL of the protected API behind `/api/proxy/*`. Empty: the proxy is off',
    example: 'https://api.example.com',
  }),
  UPSTREAM_ALLOW: parsedBy(parseAllowRules).meta({
    description:
      'comma-separated `METHOD /path` rules a proxied call must match (`*` one path segment, a final `**` the rest, method `*` any), on the path after the API URL; anything else is `403 path_not_allowed` (see [the proxy route](routes.md)). Empty: every method and path',
    example: allowRulesExample,
  }),
  UPSTREAM_CREDENTIAL_IN: parsedBy(parseCredentialPlacement).meta({
    description:
      'where the API reads its credential: `authorization` (`Bearer`, the default), `header:<Name>` or `query:<param>`. What a client sent there is always replaced; a `query:` credential is taken out of `Location` headers the API sends back',
    example: credentialPlacementExample,
  }),
  UPSTREAM_API_KEY: optionalString.meta({
    description:
      'a long-lived API key sent to the API as `UPSTREAM_CREDENTIAL_IN` says, instead of a token from a grant (no token URL, issuer or client then). Never handed out by `/api/upstream-token`',
    example: 'the-key-your-API-issued',
  }),
  UPSTREAM_DEFAULT_TTL: int(1, 86_400, 300).meta({
    description: 'lifetime in seconds assumed when the upstream gives neither `expires_in` nor a JWT `exp`',
    example: '300',
  }),
  UPSTREAM_TIMEOUT_MS: int(100, 120_000, 5_000).meta({
    description:
      'timeout of each upstream request, ms; for proxied calls it bounds connecting, the headers and each gap between body chunks',
    example: '5000',
  }),
  UPSTREAM_API_TIMEOUT_MS: int(1_000, 3_600_000, 300_000).meta({
    description:
      'whole-exchange limit of a proxied API call, streaming included, ms; for an event stream (a client accepting `text/event-stream` or NDJSON, and the API answering one) only until its headers',
    example: '300000',
  }),
  UPSTREAM_STREAM_IDLE_TIMEOUT_MS: int(1_000, 86_400_000, 60_000).meta({
    description:
      "an event stream through the proxy (server-sent events, NDJSON) is ended once the API sends nothing for this long, ms; keep it above the API's keep-alive interval",
    example: '60000',
  }),
  PROXY_MAX_REPLAY_BYTES: int(0, 10_485_760, 65_536).meta({
    description: 'proxied request bodies up to this size are retried once after a 401 from the API',
    example: '65536',
  }),
});

export const upstreamSecrets = ['UPSTREAM_CLIENT_SECRET', 'UPSTREAM_CLIENT_KEY', 'UPSTREAM_API_KEY'] as const;

type UpstreamEnv = z.infer<typeof upstreamSchema>;

export interface UpstreamConfig {
  issuer: string | undefined;
  tokenUrl: string | undefined;
  clientId: string;
  clientSecret: string;
  profile: UpstreamEnv['UPSTREAM_PROFILE'];
  authMethod: UpstreamEnv['UPSTREAM_AUTH_METHOD'];
  audience: string | undefined;
  scope: string | undefined;
  resource: string | undefined;
  apiUrl: string | undefined;
  defaultTtlSeconds: number;
  timeoutMs: number;
  /** Whole-exchange limit of a proxied API call, streaming included; an event stream's only until its headers. */
  apiTimeoutMs: number;
  /** An event stream is ended once the API is silent this long. */
  streamIdleMs: number;
  /** Request bodies up to this size are buffered so a 401 from the API can be retried with them. */
  maxReplayBytes: number;
  /** The imported private key of `private_key_jwt`; set when `authMethod` is `private_key_jwt`. */
  clientKey?: ClientKey | undefined;
  /**
   * With `client_assertion_file`: the file read for every token request, and the identity (`iss`, `sub`)
   * of the JWT it held at load, which keys the token cache in place of a secret.
   */
  clientAssertionFile?: { path: string; identity: string } | undefined;
  /** `client_assertion_type` of `client_assertion_file`. */
  clientAssertionType?: FederatedAssertionType | undefined;
  /**
   * With `tls_client_auth` and `self_signed_tls_client_auth`: the client certificate and key (and the
   * CAs of `UPSTREAM_TLS_CA_FILE`), presented to the token endpoint and the API.
   */
  tlsClient?: TlsClientIdentity | undefined;
  /** `aud` of the client assertions: the token endpoint (the default) or the issuer. */
  clientAssertionAudience?: UpstreamEnv['UPSTREAM_CLIENT_ASSERTION_AUDIENCE'];
  /** `UPSTREAM_CREDENTIAL_IN`; undefined: `Authorization: Bearer`. */
  credentialIn?: CredentialPlacement | undefined;
  /** `UPSTREAM_API_KEY`: a static key instead of a grant; then no token settings are set. */
  apiKey?: string | undefined;
  /** `UPSTREAM_ALLOW`: the methods and paths a proxied call may use; undefined: any. */
  allow?: AllowRule[] | undefined;
  /** Budget of requests to the token endpoint (`UPSTREAM_TOKEN_QUOTA`); undefined: no governor. */
  tokenQuota?: TokenQuota | undefined;
  /** Budget of proxied calls to the API (`UPSTREAM_CALL_QUOTA`), in the same grammar; undefined: none. */
  callQuota?: TokenQuota | undefined;
}

/** `client_assertion_file`: the file must hold a JWT now; its expiry is checked at each token request. */
function assertionFileProblems(
  e: UpstreamEnv,
  readFile: (path: string) => string,
): { problems: string[]; file?: { path: string; identity: string } } {
  const problems: string[] = [];
  for (const name of ['UPSTREAM_CLIENT_SECRET', 'UPSTREAM_CLIENT_KEY'] as const) {
    if (e[name]) problems.push(`${name}: not used with UPSTREAM_AUTH_METHOD=client_assertion_file; drop it`);
  }
  if (e.UPSTREAM_PROFILE === 'bloq') {
    problems.push(
      'UPSTREAM_AUTH_METHOD: client_assertion_file is not possible with UPSTREAM_PROFILE=bloq (its body has no client assertion); use rfc6749 or json',
    );
  }
  const path = e.UPSTREAM_CLIENT_ASSERTION_FILE;
  if (!path) {
    problems.push('UPSTREAM_CLIENT_ASSERTION_FILE: required with UPSTREAM_AUTH_METHOD=client_assertion_file');
    return { problems };
  }
  let text: string;
  try {
    text = readFile(path);
  } catch (error) {
    problems.push(
      `UPSTREAM_CLIENT_ASSERTION_FILE: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return { problems };
  }
  const assertion = parseFederatedAssertion(text);
  if (typeof assertion === 'string') {
    problems.push(`UPSTREAM_CLIENT_ASSERTION_FILE: ${path} ${assertion}`);
    return { problems };
  }
  return { problems, file: { path, identity: assertion.identity } };
}

const tlsMethods = new Set<string>(['tls_client_auth', 'self_signed_tls_client_auth']);
const tlsFileSettings = ['UPSTREAM_TLS_CERT_FILE', 'UPSTREAM_TLS_KEY_FILE', 'UPSTREAM_TLS_CA_FILE'] as const;

/** `tls_client_auth`, `self_signed_tls_client_auth`: a certificate and its key, read and checked now. */
function tlsClientProblems(
  e: UpstreamEnv,
  readFile: (path: string) => string,
): {
  problems: string[];
  identity?: TlsClientIdentity;
} {
  const method = e.UPSTREAM_AUTH_METHOD;
  const problems: string[] = [];
  for (const name of [
    'UPSTREAM_CLIENT_SECRET',
    'UPSTREAM_CLIENT_KEY',
    'UPSTREAM_CLIENT_ASSERTION_FILE',
  ] as const) {
    if (e[name]) problems.push(`${name}: not used with UPSTREAM_AUTH_METHOD=${method}; drop it`);
  }
  if (e.UPSTREAM_PROFILE === 'bloq') {
    problems.push(
      `UPSTREAM_AUTH_METHOD: ${method} is not possible with UPSTREAM_PROFILE=bloq (its body needs a clientSecret); use rfc6749 or json`,
    );
  }
  // A certificate is presented only in a TLS handshake: over plain http the server would never see it.
  for (const name of ['UPSTREAM_TOKEN_URL', 'UPSTREAM_ISSUER'] as const) {
    if (e[name]?.startsWith('http:')) {
      problems.push(`${name}: ${method} needs an https URL (the certificate travels in the TLS handshake)`);
    }
  }
  const cert = e.UPSTREAM_TLS_CERT_FILE;
  const key = e.UPSTREAM_TLS_KEY_FILE;
  if (!cert) problems.push(`UPSTREAM_TLS_CERT_FILE: required with UPSTREAM_AUTH_METHOD=${method}`);
  if (!key) problems.push(`UPSTREAM_TLS_KEY_FILE: required with UPSTREAM_AUTH_METHOD=${method}`);
  if (!cert || !key) return { problems };
  const ca = e.UPSTREAM_TLS_CA_FILE;
  const identity = loadTlsClientIdentity(
    {
      cert: { setting: 'UPSTREAM_TLS_CERT_FILE', path: cert },
      key: { setting: 'UPSTREAM_TLS_KEY_FILE', path: key },
      ca: ca ? { setting: 'UPSTREAM_TLS_CA_FILE', path: ca } : undefined,
    },
    readFile,
  );
  if (Array.isArray(identity)) return { problems: [...problems, ...identity] };
  return { problems, identity };
}

/** How the broker authenticates to the token endpoint: a client secret, or a private key (RFC 7523). */
function clientAuthProblems(e: UpstreamEnv): string[] {
  const problems: string[] = [];
  if (e.UPSTREAM_AUTH_METHOD !== 'private_key_jwt') {
    if (!e.UPSTREAM_CLIENT_SECRET) {
      problems.push(
        'UPSTREAM_CLIENT_SECRET: required when an upstream is configured (or UPSTREAM_CLIENT_SECRET_FILE)',
      );
    }
    if (e.UPSTREAM_CLIENT_KEY) {
      problems.push(
        'UPSTREAM_CLIENT_KEY: only used with UPSTREAM_AUTH_METHOD=private_key_jwt; set it or drop the key',
      );
    }
    return problems;
  }
  if (!e.UPSTREAM_CLIENT_KEY) {
    problems.push(
      'UPSTREAM_CLIENT_KEY: required with UPSTREAM_AUTH_METHOD=private_key_jwt (a private JWK, or UPSTREAM_CLIENT_KEY_FILE)',
    );
  }
  if (e.UPSTREAM_PROFILE === 'bloq') {
    problems.push(
      'UPSTREAM_AUTH_METHOD: private_key_jwt is not possible with UPSTREAM_PROFILE=bloq (its body has no client assertion); use rfc6749 or json',
    );
  }
  if (e.UPSTREAM_CLIENT_ASSERTION_AUDIENCE === 'issuer' && !e.UPSTREAM_ISSUER) {
    problems.push('UPSTREAM_CLIENT_ASSERTION_AUDIENCE: "issuer" needs UPSTREAM_ISSUER');
  }
  return problems;
}

const upstreamVars = [
  'UPSTREAM_API_KEY',
  'UPSTREAM_ISSUER',
  'UPSTREAM_TOKEN_URL',
  'UPSTREAM_CLIENT_ID',
  'UPSTREAM_CLIENT_SECRET',
  'UPSTREAM_CLIENT_KEY',
  'UPSTREAM_CLIENT_ASSERTION_FILE',
  'UPSTREAM_TLS_CERT_FILE',
  'UPSTREAM_API_URL',
] as const;

/**
 * The configured upstream, or undefined when none is (outside production that means "start the dev
 * upstream"; in production it is a problem).
 */
export function upstreamConfig(
  e: UpstreamEnv,
  production: boolean,
  problems: string[],
  readFile: (path: string) => string,
): UpstreamConfig | undefined {
  const anyUpstream = upstreamVars.some((name) => e[name] !== undefined);
  if (!anyUpstream && !production) return undefined;
  if (e.UPSTREAM_API_KEY !== undefined) return apiKeyUpstream(e, e.UPSTREAM_API_KEY, problems);
  if (!e.UPSTREAM_TOKEN_URL && !e.UPSTREAM_ISSUER) {
    problems.push(
      production && !anyUpstream
        ? 'UPSTREAM_TOKEN_URL: no upstream is configured; production never starts the dev upstream (set UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER)'
        : 'UPSTREAM_TOKEN_URL: set UPSTREAM_TOKEN_URL or UPSTREAM_ISSUER',
    );
  }
  if (!e.UPSTREAM_CLIENT_ID) problems.push('UPSTREAM_CLIENT_ID: required when an upstream is configured');
  const assertionFile =
    e.UPSTREAM_AUTH_METHOD === 'client_assertion_file' ? assertionFileProblems(e, readFile) : undefined;
  const tls = tlsMethods.has(e.UPSTREAM_AUTH_METHOD) ? tlsClientProblems(e, readFile) : undefined;
  problems.push(...(assertionFile?.problems ?? tls?.problems ?? clientAuthProblems(e)));
  if (!tls) {
    for (const name of tlsFileSettings) {
      if (e[name]) {
        problems.push(
          `${name}: only used with UPSTREAM_AUTH_METHOD=tls_client_auth or self_signed_tls_client_auth; set one or drop the file`,
        );
      }
    }
  }
  return {
    issuer: e.UPSTREAM_ISSUER,
    tokenUrl: e.UPSTREAM_TOKEN_URL,
    clientId: e.UPSTREAM_CLIENT_ID ?? '',
    clientSecret: e.UPSTREAM_CLIENT_SECRET ?? '',
    profile: e.UPSTREAM_PROFILE,
    authMethod: e.UPSTREAM_AUTH_METHOD,
    audience: e.UPSTREAM_AUDIENCE,
    scope: e.UPSTREAM_SCOPE,
    resource: e.UPSTREAM_RESOURCE,
    apiUrl: e.UPSTREAM_API_URL,
    defaultTtlSeconds: e.UPSTREAM_DEFAULT_TTL,
    timeoutMs: e.UPSTREAM_TIMEOUT_MS,
    apiTimeoutMs: e.UPSTREAM_API_TIMEOUT_MS,
    streamIdleMs: e.UPSTREAM_STREAM_IDLE_TIMEOUT_MS,
    maxReplayBytes: e.PROXY_MAX_REPLAY_BYTES,
    clientKey: e.UPSTREAM_CLIENT_KEY,
    clientAssertionAudience: e.UPSTREAM_CLIENT_ASSERTION_AUDIENCE,
    clientAssertionFile: assertionFile?.file,
    clientAssertionType: e.UPSTREAM_CLIENT_ASSERTION_TYPE,
    tlsClient: tls?.identity,
    tokenQuota: e.UPSTREAM_TOKEN_QUOTA,
    callQuota: e.UPSTREAM_CALL_QUOTA,
    allow: e.UPSTREAM_ALLOW,
    credentialIn: e.UPSTREAM_CREDENTIAL_IN,
  };
}

/** Settings of a grant, which an upstream with a static API key has none of. */
const grantVars = [
  'UPSTREAM_ISSUER',
  'UPSTREAM_TOKEN_URL',
  'UPSTREAM_CLIENT_ID',
  'UPSTREAM_CLIENT_SECRET',
  'UPSTREAM_CLIENT_KEY',
  'UPSTREAM_TLS_CERT_FILE',
  'UPSTREAM_TLS_KEY_FILE',
  'UPSTREAM_TLS_CA_FILE',
  'UPSTREAM_TOKEN_QUOTA',
  'UPSTREAM_AUDIENCE',
  'UPSTREAM_SCOPE',
  'UPSTREAM_RESOURCE',
] as const;

/** An upstream whose API takes a long-lived key: no grant, so only the API's settings apply. */
function apiKeyUpstream(e: UpstreamEnv, apiKey: string, problems: string[]): UpstreamConfig {
  for (const name of grantVars) {
    if (e[name] !== undefined) {
      problems.push(
        `${name}: not used with UPSTREAM_API_KEY (a static key has no grant); set one or the other`,
      );
    }
  }
  if (!e.UPSTREAM_API_URL) {
    problems.push('UPSTREAM_API_URL: required with UPSTREAM_API_KEY (the key is only ever sent to that API)');
  }
  return {
    issuer: undefined,
    tokenUrl: undefined,
    clientId: '',
    clientSecret: '',
    profile: e.UPSTREAM_PROFILE,
    authMethod: e.UPSTREAM_AUTH_METHOD,
    audience: undefined,
    scope: undefined,
    resource: undefined,
    apiUrl: e.UPSTREAM_API_URL,
    defaultTtlSeconds: e.UPSTREAM_DEFAULT_TTL,
    timeoutMs: e.UPSTREAM_TIMEOUT_MS,
    apiTimeoutMs: e.UPSTREAM_API_TIMEOUT_MS,
    streamIdleMs: e.UPSTREAM_STREAM_IDLE_TIMEOUT_MS,
    maxReplayBytes: e.PROXY_MAX_REPLAY_BYTES,
    allow: e.UPSTREAM_ALLOW,
    credentialIn: e.UPSTREAM_CREDENTIAL_IN,
    callQuota: e.UPSTREAM_CALL_QUOTA,
    apiKey,
  };
}
