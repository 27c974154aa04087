import { WebSocket } from 'ws';

/** Bytes queued towards a slow peer before the other side's socket stops being read. */
const highWaterBytes = 1024 * 1024;
/** Reading resumes once the queue is down to this. */
const lowWaterBytes = 256 * 1024;

/** How the relay ended, for the log line. */
export interface RelayEnd {
  /** `client` or `api`: who closed (or vanished) first. */
  by: 'client' | 'api';
  code: number;
}

/**
 * What to send the other side when one side closes with `code` (RFC 6455 §7.4). 1005 (no code) and
 * 1006/1015 (no close frame at all) may not be sent on the wire: a vanished API becomes 1014 (bad
 * gateway) for the client, a vanished client 1001 (going away) for the API.
 */
function passedOn(code: number, vanished: number): number | undefined {
  if (code === 1005) return undefined;
  if (code === 1006 || code === 1015) return vanished;
  return code;
}

/**
 * Relays messages both ways without looking into them (text stays text, binary stays binary), pausing
 * the reading side while the writing side has more than 1 MiB queued, so a slow reader holds back a
 * fast writer instead of filling the broker's memory. Either side closing closes the other with the
 * same code and reason; ws answers pings on each hop itself. `onEnd` is called once.
 */
export function relaySockets(client: WebSocket, api: WebSocket, onEnd: (end: RelayEnd) => void): void {
  const forward = (from: WebSocket, to: WebSocket) => {
    const text = { binary: false };
    const binary = { binary: true };
    let waiting = false;
    // Every message sent while waiting has this callback, so the last one's finds the queue drained.
    const resume = () => {
      if (waiting && to.bufferedAmount <= lowWaterBytes) {
        waiting = false;
        from.resume();
      }
    };
    from.on('message', (data, isBinary) => {
      if (to.readyState !== WebSocket.OPEN) return;
      const options = isBinary ? binary : text;
      // The common case costs no callback: only a full queue makes the relay wait for one.
      if (!waiting && to.bufferedAmount < highWaterBytes) {
        to.send(data as Buffer, options);
        return;
      }
      waiting = true;
      from.pause();
      to.send(data as Buffer, options, resume);
    });
  };
  forward(client, api);
  forward(api, client);
  // Paused by the forwarder until this relay listens (websocketForward.ts).
  api.resume();

  let ended = false;
  const closeOther =
    (by: RelayEnd['by'], other: WebSocket, vanished: number) => (code: number, reason: Buffer) => {
      if (!ended) {
        ended = true;
        onEnd({ by, code });
      }
      if (other.readyState === WebSocket.CLOSED || other.readyState === WebSocket.CLOSING) return;
      // A paused side would never read the close frame it is about to be sent.
      other.resume();
      const sent = passedOn(code, vanished);
      if (sent === undefined) other.close();
      else other.close(sent, reason);
    };
  client.on('close', closeOther('client', api, 1001));
  api.on('close', closeOther('api', client, 1014));
  if (api.readyState !== WebSocket.OPEN) client.close(1014);
  // Errors end in `close`, which the handlers above pass on; the reason is not the other side's business.
  client.on('error', () => {});
  api.on('error', () => {});
}
