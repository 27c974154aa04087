import { describe, expect, it } from 'vitest';
import { BrokerClientError, createBrokerClient } from '../../src/browser/client.js';

/** Records what a page's `new WebSocket(url, protocols)` was given. */
class RecordingSocket {
  static opened: { url: string; protocols: string[] }[] = [];
  constructor(url: string, protocols: string[]) {
    RecordingSocket.opened.push({ url, protocols });
  }
}

function client(tokenType = 'Bearer', baseUrl = 'https://broker.test') {
  RecordingSocket.opened = [];
  return createBrokerClient({
    baseUrl,
    autoRefresh: false,
    WebSocket: RecordingSocket as unknown as typeof WebSocket,
    fetch: async () => Response.json({ token: 'token-1', tokenType, expiresIn: 60 }),
  });
}

describe('client.websocket and upstream(name).websocket', () => {
  it('when a page opens a socket to a named upstream, then it goes to wss:// under the proxy with the token offered as a subprotocol', async () => {
    const broker = client();
    await broker.upstream('chat').websocket('/rooms/42?since=5', 'chat.v2');
    await broker.websocket('feed', ['a', 'b']);
    expect(RecordingSocket.opened).toEqual([
      {
        url: 'wss://broker.test/api/proxy/chat/rooms/42?since=5',
        protocols: ['token-broker', 'token-broker.bearer.token-1', 'chat.v2'],
      },
      {
        url: 'wss://broker.test/api/proxy/feed',
        protocols: ['token-broker', 'token-broker.bearer.token-1', 'a', 'b'],
      },
    ]);
  });

  it('when the broker is on http, then the socket is ws://', async () => {
    await client('Bearer', 'http://127.0.0.1:8080/').upstream('chat').websocket('x');
    expect(RecordingSocket.opened[0]?.url).toBe('ws://127.0.0.1:8080/api/proxy/chat/x');
  });

  it('when the token is DPoP-bound, then no socket is opened and the call rejects with invalid_dpop_proof', async () => {
    const error = await client('DPoP')
      .websocket('x')
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerClientError);
    expect((error as BrokerClientError).code).toBe('invalid_dpop_proof');
    expect(RecordingSocket.opened).toEqual([]);
  });
});
