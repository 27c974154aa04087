import { EventEmitter } from 'node:events';
import net, { type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createConnectionCaps, defaultMaxConnections } from '../../src/http/connectionCaps.js';
import { startBroker } from '../support/broker.js';
import { captureLogs } from '../support/logs.js';

/**
 * Issue #24 defect 2: three addresses holding idle sockets took every descriptor, a client from a fourth
 * got no answer and nothing was logged; an IPv6 client had 512 sockets per address of its `/64`. The caps
 * now hold for brokers started in process as well as by main.ts.
 */

/** Opens a connection and resolves once it is established; `answer` collects what the broker says. */
function connect(port: number) {
  return new Promise<{ socket: Socket; answer: () => string; closed: Promise<void> }>((resolve, reject) => {
    let text = '';
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
    });
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, answer: () => text, closed }));
  });
}

describe('the overall connection cap', () => {
  it('when MAX_CONNECTIONS idle sockets are open, then the next connection gets a 429 problem, a log line and a metric', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { MAX_CONNECTIONS: '6', MAX_CONNECTIONS_PER_IP: '0' },
    });
    const held = await Promise.all(Array.from({ length: 6 }, () => connect(broker.port)));
    const extra = await connect(broker.port);
    await extra.closed;
    expect(extra.answer()).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n/);
    expect(extra.answer()).toContain('"code":"rate_limited"');
    expect(broker.logs.lines()).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        cap: 'total',
        max: 6,
        msg: expect.stringContaining('MAX_CONNECTIONS'),
      }),
    );
    const first = held[0];
    first?.socket.destroy();
    await first?.closed;
    const metrics = await broker.request({ path: '/metrics' });
    expect(metrics.body).toMatch(/^token_broker_connections_refused_total\{cap="total"\} 1$/m);
    for (const { socket } of held) socket.destroy();
  });

  it('when the default is used, then it leaves a quarter of the open-file limit (at least 128) for the pools', () => {
    const limits = (n: number) => () =>
      `Limit Soft Limit Hard Limit Units\nMax open files            ${n}                ${n}                files     \n`;
    expect(defaultMaxConnections(limits(1024))).toBe(768);
    expect(defaultMaxConnections(limits(20_000))).toBe(15_000);
    expect(defaultMaxConnections(limits(256))).toBe(128);
    expect(
      defaultMaxConnections(() => {
        throw new Error('no /proc');
      }),
    ).toBe(768);
  });
});

describe('the per-network connection cap', () => {
  const fakeSocket = (remoteAddress: string) =>
    Object.assign(new EventEmitter(), {
      remoteAddress,
      end: () => undefined,
      destroySoon: () => undefined,
    }) as unknown as Socket;

  it('when addresses of one IPv6 /56 connect, then they share one MAX_CONNECTIONS_PER_IP, as the rate limits group them', () => {
    const refused: string[] = [];
    const caps = createConnectionCaps({
      maxPerNetwork: 2,
      maxTotal: 0,
      idleTimeoutMs: 10_000,
      logger: captureLogs().logger,
      clock: createManualClock(),
      onRefused: (cap) => refused.push(cap),
    });
    const sameNetwork = ['2001:db8:0:1::1', '2001:db8:0:2::1', '2001:db8:0:ff::9'].map(fakeSocket);
    expect(sameNetwork.map((socket) => caps.admit(socket))).toEqual([true, true, false]);
    expect(caps.admit(fakeSocket('2001:db8:0:100::1'))).toBe(true);
    expect([caps.admit(fakeSocket('::ffff:10.0.0.1')), caps.admit(fakeSocket('10.0.0.1'))]).toEqual([
      true,
      true,
    ]);
    expect(caps.admit(fakeSocket('10.0.0.1'))).toBe(false);
    expect(refused).toEqual(['per_network', 'per_network']);
    sameNetwork[0]?.emit('close');
    expect(caps.admit(fakeSocket('2001:db8:0:3::3'))).toBe(true);
    expect(caps.open()).toBe(5);
  });
});
