import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Handler } from '../../../src/http/dispatch/handler.js';
import { bodyIdleTimeout } from '../../../src/http/middleware/bodyIdleTimeout.js';
import { serveHandlers } from '../../support/handlerServer.js';
import { captureLogs } from '../../support/logs.js';
import { sleep } from '../../support/waiting.js';

const idleMs = 200;

/** Reads the whole body, then answers how many bytes came. */
const readAll: Handler = async (req, res) => {
  let bytes = 0;
  for await (const chunk of req) bytes += (chunk as Buffer).length;
  res.end(`read ${bytes}`);
};

/** A raw connection: the test decides when each byte of the request leaves. */
async function open(url: string): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, text: () => received, closed };
}

const head = (length: number) =>
  `POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: ${length}\r\n\r\n`;

describe('bodyIdleTimeout', () => {
  it('when a request has no body, then it is passed on and answered, however slow the handler', async () => {
    const slow: Handler = async (_req, res) => {
      await sleep(idleMs * 2);
      res.end('done');
    };
    const url = await serveHandlers([bodyIdleTimeout(idleMs), slow], captureLogs().logger);
    const connection = await open(url);
    connection.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await connection.closed;
    expect(connection.text()).toMatch(/^HTTP\/1\.1 200 [\s\S]*done$/);
  });

  it('when a body arrives in pieces with short pauses, then it is read whole', async () => {
    const url = await serveHandlers([bodyIdleTimeout(idleMs), readAll], captureLogs().logger);
    const connection = await open(url);
    connection.socket.write(head(6));
    for (const piece of ['ab', 'cd', 'ef']) {
      await sleep(idleMs / 4);
      connection.socket.write(piece);
    }
    connection.socket.end();
    await connection.closed;
    expect(connection.text()).toMatch(/^HTTP\/1\.1 200 [\s\S]*read 6$/);
  });

  it('when a body stops arriving, then the answer is 408 request_timeout with Connection: close, and the socket is closed', async () => {
    const url = await serveHandlers([bodyIdleTimeout(idleMs), readAll], captureLogs().logger);
    const connection = await open(url);
    connection.socket.write(`${head(10)}abc`);
    await connection.closed;
    const answer = connection.text();
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer).toContain('"code":"request_timeout"');
    expect(answer).toContain(`stalled for more than ${idleMs} ms`);
  });

  it('when a body stops arriving after the answer started, then the connection is cut', async () => {
    const streaming: Handler = async (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started');
      for await (const _chunk of req) {
        // Drains the body, as a proxied exchange would.
      }
      res.end('never');
    };
    const url = await serveHandlers([bodyIdleTimeout(idleMs), streaming], captureLogs().logger);
    const connection = await open(url);
    connection.socket.write(`${head(10)}abc`);
    await connection.closed;
    expect(connection.text()).toMatch(/^HTTP\/1\.1 200 /);
    expect(connection.text()).not.toContain('never');
  });

  it('when the body waits unread because the broker is slow to read it, then that silence does not count', async () => {
    const lateReader: Handler = async (req, res, next) => {
      await sleep(idleMs * 3);
      await readAll(req, res, next);
    };
    const url = await serveHandlers([bodyIdleTimeout(idleMs), lateReader], captureLogs().logger);
    const connection = await open(url);
    connection.socket.write(head(6));
    await sleep(idleMs / 4);
    connection.socket.write('abcdef');
    await sleep(idleMs * 4);
    connection.socket.end();
    await connection.closed;
    expect(connection.text()).toMatch(/^HTTP\/1\.1 200 [\s\S]*read 6$/);
  });
});
