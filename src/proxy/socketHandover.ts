import type { Socket } from 'node:net';
import { WebSocket } from 'ws';

/** One end of a relayed WebSocket after its handshake: the TCP socket, and what was read past the handshake. */
export interface RawSocket {
  socket: Socket;
  head: Buffer;
}

/**
 * A ws WebSocket that stops once ws has made and checked a handshake, on either side (as
 * WebSocketServer's `WebSocket` class, or as the client towards the API): instead of reading frames, it
 * hands the socket over, so the relay passes frames through without parsing them (websocketRelay.ts).
 * `setSocket(socket, head)` is the step ws takes on both sides right after a handshake it accepted
 * (ws 8, lib/websocket.js); the instance stays `CONNECTING` and owns nothing after it.
 */
export class HandedOverSocket extends WebSocket {
  raw: RawSocket | undefined;

  setSocket(socket: Socket, head: Buffer): void {
    // As ws does: the handshake's timeout no longer applies, and small frames leave at once.
    socket.setTimeout(0);
    socket.setNoDelay();
    // Nothing may be read before the relay listens; an error until then ends in `close`, which it sees.
    socket.pause();
    socket.on('error', () => {});
    this.raw = { socket, head };
    this.emit('open');
  }
}
