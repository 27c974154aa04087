import type { Socket } from 'node:net';
import { closeFrame } from './closeFrame.js';
import { createFrameBoundaries, type FrameBoundaries } from './frameBoundaries.js';
import type { RawSocket } from './socketHandover.js';

/** How long a side may take to finish its closing handshake and close TCP, as ws's own `closeTimeout`. */
const closeTimeoutMs = 30_000;
/**
 * How long the broker's close waits for the API's frame in progress to end before cutting the page's
 * connection: a close on expiry or revocation reaches the page within 1 s either way.
 */
const boundaryWaitMs = 900;

/** How the relay ended, for the log line. */
export interface RelayEnd {
  /** `client` or `api`: who closed (or vanished) first. */
  by: 'client' | 'api';
  /** The code the broker sent for a side that vanished; a code passed through is not read. */
  code: number | undefined;
}

/** The broker's own close of a relayed socket (expiry, revocation, shutdown). */
export type CloseRelay = (code: number, reason: string) => void;

/** One direction of the relay. */
interface Pass {
  readonly frames: FrameBoundaries;
  /**
   * Sends `frame` in place of anything more from this side, then ends: at the next frame boundary
   * within `waitMs`, else (or with no wait) after cutting the frame in progress, without `frame`.
   */
  stopWith(frame: Buffer[], waitMs: number): void;
  /** The sending side has nothing more to send (FIN, error or close): pass that on. */
  ended(gone: () => Buffer[]): void;
}

/**
 * Passes one side's bytes to the other as they come, following only where frames begin and end. A full
 * write queue pauses the reading side until it drains, so a slow reader holds back a fast writer instead
 * of filling the broker's memory.
 */
function pass(from: Socket, to: Socket, head: Buffer, onCloseFrame: () => void): Pass {
  const frames = createFrameBoundaries();
  let last: Buffer[] | undefined;
  let stopped = false;
  let closing = false;

  const finish = () => {
    stopped = true;
    if (to.writable) {
      for (const part of last ?? []) to.write(part);
      to.end();
    }
    // What still comes is dropped, but read, so the side's own close frame and FIN arrive.
    from.resume();
  };

  // Nothing can follow a frame cut short: the other side sees its connection end (1006).
  const cut = () => {
    if (stopped) return;
    last = undefined;
    finish();
  };

  const onData = (chunk: Buffer) => {
    if (stopped) return;
    if (last !== undefined) {
      const upTo = frames.upToBoundary(chunk);
      if (upTo > 0 && to.writable) to.write(upTo === chunk.length ? chunk : chunk.subarray(0, upTo));
      if (frames.atBoundary) finish();
      return;
    }
    frames.read(chunk);
    if (to.writable && !to.write(chunk)) from.pause();
    if (!closing && frames.closeSeen) {
      closing = true;
      onCloseFrame();
    }
  };
  to.on('drain', () => {
    if (!stopped) from.resume();
  });
  if (head.length > 0) onData(head);
  from.on('data', onData);

  return {
    frames,
    stopWith(frame, waitMs) {
      if (stopped || last !== undefined) return;
      last = frame;
      if (frames.atBoundary) finish();
      else if (waitMs === 0) cut();
      else setTimeout(cut, waitMs).unref();
    },
    ended(gone) {
      if (stopped) return;
      if (!frames.atBoundary) cut();
      else {
        // A side gone without a close frame is closed for it.
        if (!frames.closeSeen) last ??= gone();
        finish();
      }
    },
  };
}

/**
 * Relays a WebSocket between the page and the API once both handshakes are done, passing every frame
 * through as it came: the page's frames stay masked with the page's own mask (valid client frames for
 * the API), the API's stay unmasked (valid server frames for the page), and pings and pongs reach the
 * other end, which answers them. No extension is negotiated on either side, so no frame carries state
 * the broker would have to know (RFC 6455 §9). Only frame headers are read, so the broker can put a
 * close frame of its own at a boundary (control frames may come between fragments, §5.4): `close`
 * sends `code` to the page once the API's frame in progress has passed (for up to 900 ms), and `1001` to
 * the API at once, cutting the page's frame in progress. A side that goes away without a close frame is closed
 * for the other with 1014 (bad gateway, for the page) or 1001 (going away, for the API) (§7.4.1). A
 * close passed through needs nothing from the broker: each side's FIN goes on to the other.
 * `onEnd` is called once, when both sockets have closed.
 */
export function relaySockets(client: RawSocket, api: RawSocket, onEnd: (end: RelayEnd) => void): CloseRelay {
  const page = client.socket;
  const upstream = api.socket;
  let first: RelayEnd['by'] | undefined;
  const toApi = pass(page, upstream, client.head, () => {
    first ??= 'client';
  });
  const toPage = pass(upstream, page, api.head, () => {
    first ??= 'api';
  });
  // Built only when needed: most sockets close with frames of their own.
  const pageGone = () => closeFrame(1001, '', true);
  const apiGone = () => closeFrame(1014, '', false);
  let code: number | undefined;
  let timer: NodeJS.Timeout | undefined;

  const linger = () => {
    timer ??= setTimeout(() => {
      page.destroy();
      upstream.destroy();
    }, closeTimeoutMs).unref();
  };
  const ended = (by: RelayEnd['by']) => {
    first ??= by;
    const [direction, gone, vanishedCode] =
      by === 'client' ? [toApi, pageGone, 1001] : [toPage, apiGone, 1014];
    if (!direction.frames.closeSeen && direction.frames.atBoundary) code ??= vanishedCode;
    direction.ended(gone);
    linger();
  };
  page.on('end', () => ended('client'));
  upstream.on('end', () => ended('api'));
  let open = 2;
  const closed = (by: RelayEnd['by']) => () => {
    ended(by);
    open -= 1;
    if (open > 0) return;
    clearTimeout(timer);
    onEnd({ by: first ?? by, code });
  };
  page.once('close', closed('client'));
  upstream.once('close', closed('api'));
  page.resume();
  upstream.resume();

  return (closeCode, reason) => {
    first ??= 'client';
    toPage.stopWith(closeFrame(closeCode, reason, false), boundaryWaitMs);
    // Not one more byte of a page whose token is no longer good reaches the API, not even a frame's rest.
    toApi.stopWith(closeFrame(1001, reason, true), 0);
    linger();
  };
}
