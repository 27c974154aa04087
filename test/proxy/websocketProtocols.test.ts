import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { readProtocolOffer, refuseQueryToken } from '../../src/proxy/websocketProtocols.js';

const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    return error instanceof BrokerError ? error.code : 'not a BrokerError';
  }
}

describe('Sec-WebSocket-Protocol', () => {
  it('when a page offers token-broker, its token and its own protocols, then the token is read and only its own are forwarded, in order', () => {
    expect(readProtocolOffer(`chat.v2, token-broker,token-broker.bearer.${token} ,graphql-ws`)).toEqual({
      token,
      forwarded: ['chat.v2', 'graphql-ws'],
    });
    expect(readProtocolOffer(['token-broker', `token-broker.bearer.${token}`])).toEqual({
      token,
      forwarded: [],
    });
  });

  it('when the header is missing, holds no token or is malformed, then it is refused with a stable code', () => {
    const cases: [string | undefined, string][] = [
      [undefined, 'invalid_client_token'],
      ['', 'invalid_client_token'],
      ['token-broker', 'invalid_client_token'],
      ['token-broker, token-broker.bearer.', 'invalid_client_token'],
      [`token-broker.bearer.${token}`, 'invalid_request'],
      [`token-broker, token-broker.bearer.${token}, a b`, 'invalid_request'],
      [`token-broker, token-broker.bearer.${token},`, 'invalid_request'],
      [`token-broker, token-broker.bearer.${token}, "quoted"`, 'invalid_request'],
      [`token-broker, token-broker.bearer.${token}, ünïcode`, 'invalid_request'],
      [`token-broker, token-broker.bearer.${token}, x, x`, 'invalid_request'],
      [`token-broker, token-broker.bearer.${token}, token-broker.bearer.other`, 'invalid_request'],
      [
        [
          'token-broker',
          ...Array.from({ length: 40 }, (_, i) => `p${i}`),
          `token-broker.bearer.${token}`,
        ].join(','),
        'invalid_request',
      ],
    ];
    for (const [header, code] of cases)
      expect({ header, code: codeOf(() => readProtocolOffer(header)) }).toEqual({ header, code });
  });

  it('when a refusal names what to fix, then it never repeats the token', () => {
    try {
      readProtocolOffer(`token-broker.bearer.${token}, a b`);
    } catch (error) {
      expect((error as BrokerError).detail).not.toContain(token);
    }
  });
});

describe('tokens in the query', () => {
  it('when a query carries a token parameter or a JWT-shaped value, then it is refused; other queries pass', () => {
    for (const query of [
      `access_token=${token}`,
      'token=abc',
      'Client_Token=x',
      `x=1&t=${token}`,
      `t=${encodeURIComponent(token)}`,
    ]) {
      expect({ query, code: codeOf(() => refuseQueryToken(query)) }).toEqual({
        query,
        code: 'invalid_request',
      });
    }
    for (const query of [undefined, '', 'since=5&room=42', 'tokens=3', 'q=eyJ']) {
      expect(codeOf(() => refuseQueryToken(query))).toBeUndefined();
    }
  });
});
