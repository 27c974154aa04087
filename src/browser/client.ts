/**
 * token-broker browser helper. It fetches a short-lived client token from the broker, keeps it in
 * memory only (never localStorage, sessionStorage or cookies, where any script or a later visitor
 * could read it), renews it ahead of expiry and calls the protected API through the broker's proxy.
 * The upstream client secret and access token stay on the broker; this module never sees them.
 *
 * Built into one dependency-free ES module, served at `/client.js`: works in browsers and in
 * Node 20+ (global fetch).
 * @module
 */
export { createBrokerClient } from './brokerClient.js';
export { createDpopSigner, type DpopSignerOptions } from './dpop.js';
export {
  BrokerClientError,
  type BrokerClientErrorOptions,
  type BrokerErrorCode,
  type ClientErrorCode,
} from './errors.js';
export { defaultRefreshMargin } from './tokenRequest.js';
export type {
  BrokerClient,
  BrokerClientEvent,
  BrokerClientOptions,
  DpopSigner,
  FetchFunction,
  RenewableCode,
  TokenInfo,
  TokenReason,
  WebSocketConstructor,
} from './types.js';
