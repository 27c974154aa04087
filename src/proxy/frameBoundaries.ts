/** Opcode of a close frame (RFC 6455 §5.5.1). */
const closeOpcode = 0x8;
/** 2 bytes, then a 16- or 64-bit length, then a 4-byte mask: at most 14 bytes (RFC 6455 §5.2). */
const longestHeader = 14;

/**
 * Where the frames of one direction of a WebSocket begin and end, read from their headers alone: the
 * relay passes each chunk on as it came, and this follows along so the broker knows when it may put a
 * frame of its own between them. Payloads are skipped by their length, never read, unmasked or copied;
 * only a header split across two chunks is copied (up to 14 bytes).
 */
export interface FrameBoundaries {
  /** Follows every frame in `chunk`. */
  read(chunk: Buffer): void;
  /**
   * Follows `chunk` up to the end of the frame in progress and returns how many of its bytes that is:
   * 0 at a boundary, `chunk.length` when the frame goes on past it.
   */
  upToBoundary(chunk: Buffer): number;
  /** Between two frames: a frame of the broker's may be sent here. */
  readonly atBoundary: boolean;
  /** A close frame's header has passed: its sender ends the conversation (RFC 6455 §5.5.1). */
  readonly closeSeen: boolean;
}

export function createFrameBoundaries(): FrameBoundaries {
  /** Payload bytes of the current frame still to pass. */
  let remaining = 0;
  const header = Buffer.alloc(longestHeader);
  /** Header bytes of the next frame seen so far. */
  let headerBytes = 0;
  let closeSeen = false;

  /** Bytes the header needs, once its second byte is in. */
  const headerLength = () => {
    const length7 = header[1] & 0x7f;
    const extended = length7 === 126 ? 2 : length7 === 127 ? 8 : 0;
    return 2 + extended + (header[1] & 0x80 ? 4 : 0);
  };

  const payloadLength = () => {
    const length7 = header[1] & 0x7f;
    if (length7 === 126) return header.readUInt16BE(2);
    // The top bit must be 0 (§5.2); a length past 2^53 only means this frame is followed to its end never.
    if (length7 === 127) return header.readUInt32BE(2) * 2 ** 32 + header.readUInt32BE(6);
    return length7;
  };

  /** Follows `chunk` from `at`; with `stop`, returns as soon as a frame ends. */
  const follow = (chunk: Buffer, at: number, stop: boolean): number => {
    let offset = at;
    while (offset < chunk.length) {
      if (remaining > 0) {
        const step = Math.min(remaining, chunk.length - offset);
        remaining -= step;
        offset += step;
        if (stop && remaining === 0) return offset;
        continue;
      }
      header[headerBytes] = chunk[offset];
      headerBytes += 1;
      offset += 1;
      if (headerBytes < 2 || headerBytes < headerLength()) continue;
      if ((header[0] & 0x0f) === closeOpcode) closeSeen = true;
      remaining = payloadLength();
      headerBytes = 0;
      if (stop && remaining === 0) return offset;
    }
    return offset;
  };

  return {
    read(chunk) {
      follow(chunk, 0, false);
    },
    upToBoundary(chunk) {
      if (remaining === 0 && headerBytes === 0) return 0;
      return follow(chunk, 0, true);
    },
    get atBoundary() {
      return remaining === 0 && headerBytes === 0;
    },
    get closeSeen() {
      return closeSeen;
    },
  };
}
