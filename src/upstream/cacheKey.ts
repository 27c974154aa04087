import { createHash } from 'node:crypto';
import type { UpstreamConfig } from '../config/upstreamSettings.js';

/** Everything that decides which upstream token a request gets. */
export interface CacheKeyInput {
  tokenEndpoint: string;
  clientId: string;
  authMethod: string;
  profile: string;
  /** Space-separated scopes (RFC 6749 §3.3); order and repeats do not matter. */
  scope: string | undefined;
  audience: string | undefined;
  resource: string | undefined;
  /** Only its fingerprint enters the key: a rotated secret must never be served a token of the old one. */
  secret: string;
  /**
   * With `private_key_jwt`: the RFC 7638 thumbprint of the client key, which then enters the key instead
   * of the secret, so a rotated key likewise never gets a token obtained with the old one.
   */
  clientKeyThumbprint?: string | undefined;
  /** With `client_assertion_file`: the workload's identity (`iss`, `sub`), stable across the platform's rotations. */
  assertionIdentity?: string | undefined;
  /**
   * With mutual TLS: the certificate's `x5t#S256`. A token may be bound to the certificate, so one
   * obtained with a rotated-out certificate is never served for the new one.
   */
  certificateThumbprint?: string | undefined;
}

function sha256Hex(domain: string, input: string): string {
  // The domain label and a NUL separator keep hashes made for different purposes from ever colliding.
  return createHash('sha256').update(`token-broker/${domain}\u0000${input}`).digest('hex');
}

/**
 * Scopes as a set: RFC 6749 §3.3 makes the scope parameter an unordered list of space-delimited values.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-3.3
 */
export function normalizeScope(scope: string | undefined): string {
  return [...new Set((scope ?? '').split(/\s+/).filter(Boolean))].sort().join(' ');
}

/** A short, one-way fingerprint of the client secret (16 hex digits of a domain-separated SHA-256). */
export function secretFingerprint(secret: string): string {
  return sha256Hex('client-secret/v1', secret).slice(0, 16);
}

/** A short, one-way fingerprint of an access token, the most a log line may say about a token. */
export function tokenFingerprint(accessToken: string): string {
  return sha256Hex('access-token/v1', accessToken).slice(0, 12);
}

/**
 * The store key for one upstream token. The whole tuple is hashed, so a key name reveals neither the
 * client, the endpoint nor anything about the secret; the secret's fingerprint (or the client key's
 * thumbprint) is part of the tuple, so rotating the credential changes the key.
 */
export function cacheKey(input: CacheKeyInput): string {
  const tuple = JSON.stringify([
    input.tokenEndpoint,
    input.clientId,
    input.authMethod,
    input.profile,
    normalizeScope(input.scope),
    input.audience ?? null,
    input.resource ?? null,
    input.clientKeyThumbprint
      ? `jwk:${input.clientKeyThumbprint}`
      : input.assertionIdentity
        ? `jwt:${input.assertionIdentity}`
        : input.certificateThumbprint
          ? `x5t:${input.certificateThumbprint}`
          : secretFingerprint(input.secret),
  ]);
  return `upstream-token:${sha256Hex('cache-key/v1', tuple).slice(0, 32)}`;
}

/** What a token request is made of: what the cache key is built from, and what the token cache reads. */
export type TokenRequestConfig = Pick<
  UpstreamConfig,
  | 'clientId'
  | 'clientSecret'
  | 'clientKey'
  | 'clientAssertionFile'
  | 'tlsClient'
  | 'profile'
  | 'authMethod'
  | 'audience'
  | 'scope'
  | 'resource'
>;

/** The key input for a configuration once its token endpoint is known (configured or discovered). */
export function cacheKeyInput(config: TokenRequestConfig, tokenEndpoint: string): CacheKeyInput {
  return {
    tokenEndpoint,
    clientId: config.clientId,
    authMethod: config.authMethod,
    profile: config.profile,
    scope: config.scope,
    audience: config.audience,
    resource: config.resource,
    secret: config.clientSecret,
    clientKeyThumbprint: config.clientKey?.thumbprint,
    assertionIdentity: config.clientAssertionFile?.identity,
    certificateThumbprint: config.tlsClient?.thumbprint,
  };
}

/**
 * Which token a configuration asks for, known before any discovery: the cache key with the configured
 * token URL, or the issuer it is discovered from. Named upstreams with the same identity share one
 * cache; any difference in what is requested (scope, audience, resource, client, secret) keeps them apart.
 */
export function tokenIdentity(
  config: TokenRequestConfig & Pick<UpstreamConfig, 'tokenUrl' | 'issuer'>,
): string {
  return cacheKey(cacheKeyInput(config, config.tokenUrl ?? `issuer:${config.issuer ?? ''}`));
}
