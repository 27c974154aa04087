import { maxHeaderSize } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { sample } from '../support/metricsText.js';
import { openConnection } from '../support/rawConnection.js';

/**
 * Issue #24: every request, however malformed, gets the broker's own problem+json. What Node's HTTP
 * parser and its timeouts refuse never reaches the app, and was answered Node's bare 400, 408 or 431.
 */

const idleMs = 1_000;

let broker: FakeUpstreamBroker;

beforeAll(async () => {
  broker = await startBroker({ upstream: 'fake', env: { IDLE_SOCKET_TIMEOUT_MS: String(idleMs) } });
});
afterAll(() => broker?.close());

/** The status, headers (lower-cased names) and JSON body of the one answer a raw connection received. */
function parseAnswer(text: string) {
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [
      line.slice(0, line.indexOf(':')).toLowerCase(),
      line.slice(line.indexOf(':') + 1).trim(),
    ]),
  );
  return {
    status: Number(statusLine.split(' ')[1]),
    headers,
    body: JSON.parse(body) as Record<string, unknown>,
  };
}

/** Sends `bytes` on a fresh connection and answers what came back once the broker closed it. */
async function send(bytes: string) {
  const connection = await openConnection(broker.port);
  connection.socket.write(bytes);
  await connection.closed;
  return parseAnswer(connection.received());
}

async function refusals(code: string): Promise<number> {
  const text = (await broker.request({ path: '/metrics' })).body;
  return sample(text, 'token_broker_refusals_total', { code, route: 'none' }) ?? 0;
}

function expectProblem(answer: ReturnType<typeof parseAnswer>, status: number, code: string) {
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(answer.headers.connection).toBe('close');
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.body).toMatchObject({ type: `urn:token-broker:problem:${code}`, status, code });
}

const warnedAbout = (code: string) =>
  expect.objectContaining({
    level: 'warn',
    code,
    remoteAddress: '127.0.0.1',
    msg: 'a request was refused before it was read',
  });

describe('what the HTTP parser refuses', () => {
  it('when the header block is larger than Node accepts, then 431 headers_too_large, a warning without the headers, and a count', async () => {
    const before = await refusals('headers_too_large');
    const filler = `filler-${'x'.repeat(maxHeaderSize)}`;
    const answer = await send(`GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-filler: ${filler}\r\n\r\n`);
    expectProblem(answer, 431, 'headers_too_large');
    expect(answer.body.detail).toContain(String(maxHeaderSize));
    expect(broker.logs.lines()).toContainEqual(warnedAbout('headers_too_large'));
    expect(JSON.stringify(broker.logs.lines())).not.toContain('filler-');
    expect(await refusals('headers_too_large')).toBe(before + 1);
  });

  it.each([
    ['a request line that is not HTTP', 'this is not http\r\n\r\n'],
    ['an unknown HTTP version', 'GET /healthz HTTP/7.1\r\nhost: 127.0.0.1\r\n\r\n'],
    [
      'a control character in a header value',
      'GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-bad: a\x01b\r\n\r\n',
    ],
  ])('when the request has %s, then 400 invalid_request, a warning and a count', async (_what, bytes) => {
    const before = await refusals('invalid_request');
    const answer = await send(bytes);
    expectProblem(answer, 400, 'invalid_request');
    expect(broker.logs.lines()).toContainEqual(warnedAbout('invalid_request'));
    expect(await refusals('invalid_request')).toBe(before + 1);
  });
});

describe('what the headers timeout refuses', () => {
  it('when the headers arrive too slowly, then 408 request_timeout, a warning and a count', async () => {
    const before = await refusals('request_timeout');
    const connection = await openConnection(broker.port);
    connection.socket.write('GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n');
    await connection.closed;
    expectProblem(parseAnswer(connection.received()), 408, 'request_timeout');
    expect(broker.logs.lines()).toContainEqual(warnedAbout('request_timeout'));
    expect(await refusals('request_timeout')).toBe(before + 1);
  });

  it('when a connection sends nothing, then it is told 408 request_timeout as well, neither warned about nor counted', async () => {
    const warnings = () =>
      broker.logs.lines().filter((line) => line.level === 'warn' && line.code === 'request_timeout').length;
    const warned = warnings();
    const before = await refusals('request_timeout');
    const connection = await openConnection(broker.port);
    await connection.closed;
    expectProblem(parseAnswer(connection.received()), 408, 'request_timeout');
    expect(broker.logs.lines()).toContainEqual(
      expect.objectContaining({ level: 'debug', code: 'request_timeout', remoteAddress: '127.0.0.1' }),
    );
    expect(warnings()).toBe(warned);
    expect(await refusals('request_timeout')).toBe(before);
  });
});
