/** WebSocket load for scenario W: many sockets held open, and echo round trips counted per second. */
import { WebSocket } from 'ws';

/** Opens `count` sockets, `batch` handshakes at a time; rejects on the first that fails. */
export async function openSockets(url, protocols, headers, count, batch = 50) {
  const sockets = [];
  for (let start = 0; start < count; start += batch) {
    const opening = Array.from(
      { length: Math.min(batch, count - start) },
      () =>
        new Promise((resolve, reject) => {
          const socket = new WebSocket(url, protocols, { headers, perMessageDeflate: false });
          socket.once('open', () => resolve(socket));
          socket.once('error', reject);
        }),
    );
    sockets.push(...(await Promise.all(opening)));
  }
  return sockets;
}

/** Closes sockets and waits until each has closed. */
export async function closeSockets(sockets) {
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise((resolve) => {
          if (socket.readyState === WebSocket.CLOSED) resolve();
          else {
            socket.once('close', resolve);
            socket.close();
          }
        }),
    ),
  );
}

/**
 * Echo messages per second over `sockets` for `durationSeconds`: each socket keeps `inFlight` messages
 * of `bytes` bytes on their way, sending one more for each echo it gets back.
 */
export async function echoRate(sockets, { durationSeconds, inFlight = 4, bytes = 64 }) {
  const payload = Buffer.alloc(bytes, 'x').toString();
  let echoed = 0;
  let running = true;
  const listeners = sockets.map((socket) => {
    const onMessage = () => {
      echoed += 1;
      if (running) socket.send(payload);
    };
    socket.on('message', onMessage);
    for (let i = 0; i < inFlight; i += 1) socket.send(payload);
    return () => socket.off('message', onMessage);
  });
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, durationSeconds * 1000));
  running = false;
  const counted = echoed;
  const seconds = (performance.now() - started) / 1000;
  // Let what is still on its way come back, so the next round starts from quiet sockets.
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const stop of listeners) stop();
  return counted / seconds;
}
