import { performance } from 'node:perf_hooks';
import { trace } from '@opentelemetry/api';
import { Agent, type Dispatcher, request } from 'undici';
import type { Clock } from '../clock.js';
import type { UpstreamConfig } from '../config/index.js';
import { UpstreamError } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import { spanAttributes } from '../telemetry/spans.js';
import { createAssertionFileReader } from './assertionFile.js';
import { createClientAssertionSigner } from './clientAssertion.js';
import { createDiscovery } from './discovery.js';
import { resolveExpiresAt } from './jwtExpiry.js';
import { buildTokenRequest, type Grant, oauthErrorSchema, tokenAnswerSchema } from './profiles.js';
import type { TlsClientIdentity } from './tlsClientIdentity.js';
import { createTlsDispatchers } from './tlsDispatchers.js';
import type { TokenClient, UpstreamCredentials, UpstreamToken } from './types.js';

/** Largest answer we read from an upstream; a token answer is a few KiB, anything bigger is hostile or broken. */
export const maxAnswerBytes = 64 * 1024;

/** Longest `Retry-After` we pass on (one day): a server asking for more is treated as asking for a day. */
const maxRetryAfterSeconds = 86_400;

export interface TokenClientDeps {
  config: UpstreamConfig;
  /** undici dispatcher (an Agent with connection limits, or a MockAgent); the global one by default. */
  dispatcher?: Dispatcher;
  clock: Clock;
  logger: Logger;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * `Retry-After` as seconds from now: delay-seconds or an HTTP-date.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  const seconds = /^\d+$/.test(text) ? Number(text) : Math.ceil((Date.parse(text) - now) / 1000);
  if (Number.isNaN(seconds)) return undefined;
  return Math.min(Math.max(seconds, 0), maxRetryAfterSeconds);
}

async function readBounded(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxAnswerBytes) {
      body.destroy();
      throw new UpstreamError('invalid_response', {
        description: `answer larger than ${maxAnswerBytes} bytes`,
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Scheme, host and path only: a URL's user-info or query could hold credentials and must not reach the log. */
function forLog(url: string): string {
  const parsed = URL.parse(url);
  return parsed ? `${parsed.origin}${parsed.pathname}` : 'invalid-url';
}

/**
 * Runs client credentials and refresh grants against the upstream token endpoint in the configured
 * profile (`rfc6749`, `json`, `bloq`). Every request has a deadline and a size limit; every answer is
 * parsed by a schema; every failure is an `UpstreamError` whose message holds no secret or token.
 *
 * `refresh()` only refreshes: on `invalid_grant` it throws, and the token cache falls back to
 * `clientCredentials()`.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
 */
export function createTokenClient(deps: TokenClientDeps): TokenClient {
  const { config, dispatcher, clock, logger } = deps;
  const timeoutMs = config.timeoutMs;
  // Mutual TLS: connections that present the certificate of each generation (RFC 8705 §2).
  const tlsAgents = createTlsDispatchers(
    (identity) => new Agent({ connect: { secureContext: identity.secureContext, timeout: timeoutMs } }),
  );
  /** The certificate of the latest token request: discovery connects with it too (and with its CAs). */
  let latestTls = config.tlsClient;

  async function exchange(
    url: string,
    init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string },
    tls: TlsClientIdentity | undefined,
  ) {
    const signal = AbortSignal.timeout(timeoutMs);
    // Chosen in the same tick as the request starts: a dispatcher of an older certificate may be closing.
    const via = tls ? tlsAgents.for(tls) : dispatcher;
    try {
      const answer = await request(url, {
        ...init,
        ...(via ? { dispatcher: via } : {}),
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const body = await readBounded(answer.body);
      return { status: answer.statusCode, headers: answer.headers, body } satisfies Answer;
    } catch (error) {
      if (error instanceof UpstreamError) throw error;
      const code = (error as { code?: unknown }).code;
      if (signal.aborted || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
        throw new UpstreamError('timeout', { description: `no complete answer within ${timeoutMs} ms` });
      }
      // Only the error code travels on: undici's error objects are not ours to vouch for.
      throw new UpstreamError('network', {
        description: typeof code === 'string' ? code : (error as Error).name,
      });
    }
  }

  const { tokenUrl, issuer } = config;
  if (!tokenUrl && !issuer)
    throw new TypeError('createTokenClient: config.tokenUrl or config.issuer is required');
  const discovery = tokenUrl
    ? undefined
    : createDiscovery({
        issuer: issuer as string,
        logger,
        get: (url) => exchange(url, { method: 'GET', headers: { accept: 'application/json' } }, latestTls),
        mtls: config.tlsClient !== undefined,
      });

  function tokenEndpoint(): Promise<string> {
    return discovery ? discovery.tokenEndpoint() : Promise.resolve(tokenUrl as string);
  }

  if (config.authMethod === 'private_key_jwt' && !config.clientKey) {
    throw new TypeError('createTokenClient: private_key_jwt needs config.clientKey');
  }
  const assertionAudience = config.clientAssertionAudience === 'issuer' ? issuer : undefined;
  if (config.clientAssertionAudience === 'issuer' && !assertionAudience) {
    throw new TypeError('createTokenClient: an issuer audience for client assertions needs config.issuer');
  }
  const readAssertion = createAssertionFileReader({ clock });
  // One signer per client key: a reloaded key gets its own, the header of each is built once.
  const signers = new WeakMap<object, ReturnType<typeof createClientAssertionSigner>>();

  /**
   * A new assertion for every request, so a retry never replays a `jti` the server has already seen.
   * `aud` is the token endpoint (RFC 7523 §3 item 3) unless the server wants its issuer identifier.
   */
  function clientAssertion(
    endpoint: string,
    { clientKey, clientAssertionFile }: UpstreamCredentials,
  ): Promise<string> | undefined {
    if (config.authMethod === 'client_assertion_file' && clientAssertionFile) {
      return readAssertion(clientAssertionFile.path);
    }
    if (config.authMethod !== 'private_key_jwt' || !clientKey) return undefined;
    let signer = signers.get(clientKey);
    if (!signer) {
      signer = createClientAssertionSigner({ clientKey, clientId: config.clientId, clock });
      signers.set(clientKey, signer);
    }
    return signer.sign(assertionAudience ?? endpoint);
  }

  function interpret(answer: Answer, grant: Grant, endpoint: string): UpstreamToken {
    const now = clock.now();
    const json = parseJson(answer.body);
    const oauthError = oauthErrorSchema.safeParse(json);
    const ok = answer.status >= 200 && answer.status <= 299;
    if (!ok || oauthError.success) {
      const details = {
        httpStatus: answer.status,
        retryAfter: parseRetryAfter(answer.headers['retry-after'], now),
      };
      if (oauthError.success) {
        throw new UpstreamError(oauthError.data.error, {
          ...details,
          description: oauthError.data.error_description,
        });
      }
      // No token endpoint at that address: a wrong URL is a configuration error, not an outage.
      const wrongUrl = answer.status === 404 || answer.status === 405;
      throw new UpstreamError(`http_${answer.status}`, {
        ...details,
        ...(wrongUrl
          ? {
              description: `no token endpoint at ${forLog(endpoint)}; check its URL (UPSTREAM_TOKEN_URL, or the issuer's metadata)`,
            }
          : {}),
      });
    }
    const parsed = tokenAnswerSchema(config.profile).safeParse(json);
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || 'body'))].join(
        ', ',
      );
      throw new UpstreamError('invalid_response', {
        httpStatus: answer.status,
        description: `unusable answer (${fields})`,
      });
    }
    const token = parsed.data;
    return {
      accessToken: token.accessToken,
      tokenType: token.tokenType,
      expiresAt: resolveExpiresAt({
        expiresIn: token.expiresIn,
        accessToken: token.accessToken,
        now,
        defaultTtlSeconds: config.defaultTtlSeconds,
      }),
      obtainedAt: now,
      // RFC 6749 §6: without a new refresh token in the answer, the one we sent stays valid.
      refreshToken: token.refreshToken ?? (grant.type === 'refresh_token' ? grant.refreshToken : undefined),
      scope: token.scope,
    };
  }

  async function run(grant: Grant, credentials: UpstreamCredentials = config): Promise<UpstreamToken> {
    const endpoint = await tokenEndpoint();
    const wire = buildTokenRequest(
      credentials === config ? config : { ...config, clientSecret: credentials.clientSecret },
      grant,
      await clientAssertion(endpoint, credentials),
    );
    const started = performance.now();
    let status: number | undefined;
    let outcome = 'ok';
    latestTls = credentials.tlsClient ?? latestTls;
    try {
      const answer = await exchange(
        endpoint,
        { method: 'POST', headers: wire.headers, body: wire.body },
        credentials.tlsClient,
      );
      status = answer.status;
      // With tracing on, the active span is this request's (tokenClientSpans.ts); without, there is none.
      trace.getActiveSpan()?.setAttribute(spanAttributes.status, status);
      return interpret(answer, grant, endpoint);
    } catch (error) {
      outcome = error instanceof UpstreamError ? error.error : 'error';
      throw error;
    } finally {
      const durationMs = Math.round(performance.now() - started);
      logger.debug(
        {
          endpoint: forLog(endpoint),
          grant: grant.type,
          profile: config.profile,
          status,
          outcome,
          durationMs,
        },
        'upstream token request',
      );
    }
  }

  return {
    clientCredentials: (credentials) => run({ type: 'client_credentials' }, credentials),
    refresh: (refreshToken, credentials) => run({ type: 'refresh_token', refreshToken }, credentials),
    tokenEndpoint,
    close: () => tlsAgents.close(),
  };
}
