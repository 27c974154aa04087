import net, { type Socket } from 'node:net';

/** A raw TCP connection to a server under test: what it answered, and when it closed. */
export interface RawConnection {
  socket: Socket;
  /** Everything received so far, as latin1 text. */
  received(): string;
  /** `performance.now()` when the connection was established. */
  openedAt: number;
  /** Resolves when the connection closes, with the `performance.now()` of that moment. */
  closed: Promise<number>;
}

/**
 * Opens a TCP connection (from `localAddress`, when given) and resolves once it is established; nothing
 * is sent. For what node:http clients cannot do: stay silent, stop mid-request, or hold many sockets.
 */
export function openConnection(
  port: number,
  { host = '127.0.0.1', localAddress }: { host?: string; localAddress?: string } = {},
): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const closed = new Promise<number>((done) => socket.once('close', () => done(performance.now())));
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('connect', () => {
      // A reset after the test has what it needs (a refusal's close) is not a failure.
      socket.off('error', reject).on('error', () => undefined);
      resolve({
        socket,
        received: () => Buffer.concat(chunks).toString('latin1'),
        openedAt: performance.now(),
        closed,
      });
    });
  });
}
