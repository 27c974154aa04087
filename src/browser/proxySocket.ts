import { BrokerClientError } from './errors.js';
import type { TokenHolder } from './tokenHolder.js';
import type { WebSocketConstructor } from './types.js';

export interface ProxySocketOptions {
  /** `baseUrl + proxyPath`, without a trailing `/`. */
  proxyRoot: string;
  tokens: TokenHolder;
  WebSocket: WebSocketConstructor | undefined;
}

/**
 * Opens a WebSocket through the broker's proxy; see {@link BrokerClient.websocket}. A browser cannot set
 * headers on a WebSocket, so the token is offered as the subprotocol `token-broker.bearer.<token>`, next
 * to `token-broker` and the page's own (docs/websockets.md).
 */
export function createProxySocket({ proxyRoot, tokens, WebSocket }: ProxySocketOptions) {
  return async (path: string, protocols: string | string[] = []): Promise<WebSocket> => {
    const info = await tokens.usable('initial');
    if (info.tokenType === 'DPoP') {
      throw new BrokerClientError('invalid_dpop_proof', {
        detail: 'no WebSockets with DPoP tokens',
      });
    }
    const url = new URL(`${proxyRoot}/${path.replace(/^\/+/, '')}`, globalThis.location?.href);
    url.protocol = url.protocol.replace('http', 'ws');
    const broker = 'token-broker';
    // Without a WebSocket class, `new` throws its own TypeError.
    return new (WebSocket as WebSocketConstructor)(url.href, [
      broker,
      `${broker}.bearer.${info.token}`,
      ...[protocols].flat(),
    ]);
  };
}
