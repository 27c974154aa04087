import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import {
  type ConnectionCap,
  createConnectionCaps,
  defaultMaxConnections,
} from '../../src/http/connectionCaps.js';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { type CapturedLogger, captureLogs } from '../support/logs.js';
import { addLoopbackAddresses, testAddresses } from '../support/loopbackAddresses.js';
import { sample } from '../support/metricsText.js';
import { openConnection, type RawConnection } from '../support/rawConnection.js';
import { missing } from '../support/requires.js';

/**
 * Issue #24 defect 2: three addresses holding idle sockets took every descriptor, a client from a fourth
 * got no answer and nothing was logged; an IPv6 client had 512 sockets per address of its `/64`. The caps
 * now hold for brokers started in process as well as by main.ts.
 */

const noIpv6Addresses = await missing('ipv6-addresses');

/** Waits for a refusal: a 429 problem, the connection closed, and a warning naming the cap's setting. */
async function expectRefused(
  connection: RawConnection,
  logs: CapturedLogger,
  cap: ConnectionCap,
  max: number,
) {
  await connection.closed;
  expect(connection.received()).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n/);
  expect(connection.received()).toContain('"code":"rate_limited"');
  const setting = cap === 'total' ? 'MAX_CONNECTIONS' : 'MAX_CONNECTIONS_PER_IP';
  expect(logs.lines()).toContainEqual(
    expect.objectContaining({ level: 'warn', cap, max, msg: expect.stringContaining(setting) }),
  );
}

describe('the overall connection cap', () => {
  it('when MAX_CONNECTIONS idle sockets are open, then the next connection gets a 429 problem, a log line and a metric', async () => {
    const broker = await startBroker({
      upstream: 'fake',
      env: { MAX_CONNECTIONS: '6', MAX_CONNECTIONS_PER_IP: '0' },
    });
    const held = await Promise.all(Array.from({ length: 6 }, () => openConnection(broker.port)));
    await expectRefused(await openConnection(broker.port), broker.logs, 'total', 6);
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

/** Sends a request on an open connection and resolves with the start of the answer. */
function answerOn(connection: RawConnection): Promise<string> {
  return new Promise((resolve) => {
    connection.socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
    connection.socket.write('GET /healthz HTTP/1.1\r\nhost: broker\r\n\r\n');
  });
}

describe.skipIf(noIpv6Addresses)('the per-network connection cap, from real IPv6 addresses', () => {
  let removeAddresses: (() => Promise<void>) | undefined;
  let broker: FakeUpstreamBroker;
  const opened: RawConnection[] = [];
  const connectFrom = async (localAddress: string) => {
    const connection = await openConnection(broker.port, { host: '::1', localAddress });
    opened.push(connection);
    return connection;
  };
  beforeAll(async () => {
    removeAddresses = await addLoopbackAddresses([...testAddresses.sameNetwork, testAddresses.otherNetwork]);
    broker = await startBroker({
      upstream: 'fake',
      host: '::1',
      env: { MAX_CONNECTIONS_PER_IP: '2', MAX_CONNECTIONS: '0' },
    });
  });
  afterAll(async () => {
    for (const { socket } of opened) socket.destroy();
    await broker?.close();
    await removeAddresses?.();
  });

  it('when two addresses of one /56 hold MAX_CONNECTIONS_PER_IP between them, then a third connection from that /56 is refused, logged and counted, and another /56 still connects', async () => {
    const [first, second] = testAddresses.sameNetwork;
    const held = [await connectFrom(first), await connectFrom(second)];
    for (const connection of held) expect(await answerOn(connection)).toMatch(/^HTTP\/1\.1 200 /);

    await expectRefused(await connectFrom(first), broker.logs, 'per_network', 2);

    const elsewhere = await connectFrom(testAddresses.otherNetwork);
    expect(await answerOn(elsewhere)).toMatch(/^HTTP\/1\.1 200 /);
    // Scraped from ::1, a network of its own.
    const metrics = await broker.request({ path: '/metrics' });
    expect(sample(metrics.body, 'token_broker_connections_refused_total', { cap: 'per_network' })).toBe(1);
    for (const connection of held) expect(connection.socket.destroyed).toBe(false);
  });
});
