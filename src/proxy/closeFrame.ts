import { Sender } from 'ws';

declare module 'ws' {
  /** ws's frame writer (ws/lib/sender.js), which @types/ws does not declare. */
  // biome-ignore lint/complexity/noStaticOnlyClass: declares ws's own class
  export class Sender {
    static frame(
      data: Buffer,
      options: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean },
    ): Buffer[];
  }
}

/** RFC 6455 §5.5.1. */
const closeOpcode = 0x8;

/**
 * A close frame with `code` and `reason`, built by ws: masked towards the API (a client's frames must be,
 * §5.3), unmasked towards the page.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer[] {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return Sender.frame(payload, {
    fin: true,
    rsv1: false,
    opcode: closeOpcode,
    mask: masked,
    readOnly: false,
  });
}
