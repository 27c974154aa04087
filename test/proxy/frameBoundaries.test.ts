import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Sender } from 'ws';
import '../../src/proxy/closeFrame.js';
import { createFrameBoundaries } from '../../src/proxy/frameBoundaries.js';

/** A frame as ws writes it: every opcode, FIN or not, masked (from a page) or not (from an API). */
const frame = fc.record({
  opcode: fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa),
  fin: fc.boolean(),
  mask: fc.boolean(),
  // Each length encoding: 7-bit, 16-bit (126 to 65,535) and 64-bit (65,536 and more).
  length: fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0, max: 300 }) },
    { weight: 1, arbitrary: fc.constantFrom(125, 126, 127, 65_535, 65_536, 70_001) },
  ),
  // Payload bytes that look like frame headers, so one read as a header would throw the count off.
  fill: fc.constantFrom(0x81, 0x88, 0xfe, 0xff, 0x00),
});

interface Stream {
  bytes: Buffer;
  /** Offsets where a frame ends (a boundary). */
  ends: number[];
  /** Offsets where a close frame's header ends. */
  closeHeaders: number[];
}

type Frame = typeof frame extends fc.Arbitrary<infer T> ? T : never;

function encode(frames: Frame[]): Stream {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  const closeHeaders: number[] = [];
  let offset = 0;
  for (const { opcode, fin, mask, length, fill } of frames) {
    const [header, payload = Buffer.alloc(0)] = Sender.frame(Buffer.alloc(length, fill), {
      fin,
      rsv1: false,
      opcode,
      mask,
      readOnly: false,
    });
    // ws merges header and payload into one buffer when it can.
    const whole = Buffer.concat([header as Buffer, payload]);
    if (opcode === 0x8) closeHeaders.push(offset + whole.length - length);
    offset += whole.length;
    ends.push(offset);
    parts.push(whole);
  }
  return { bytes: Buffer.concat(parts), ends, closeHeaders };
}

/** The stream split at arbitrary offsets (chunks of any size, as TCP delivers them). */
const split = (bytes: Buffer, cuts: number[]) => {
  const at = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: { start: number; chunk: Buffer }[] = [];
  let start = 0;
  for (const cut of [...at, bytes.length]) {
    if (cut > start) chunks.push({ start, chunk: bytes.subarray(start, cut) });
    start = Math.max(start, cut);
  }
  return chunks;
};

const streams = fc.record({
  frames: fc.array(frame, { maxLength: 12 }),
  cuts: fc.array(fc.nat(), { maxLength: 20 }),
});

describe('frame boundaries', () => {
  it('when any frames are split at any offsets, then a boundary is reported exactly where a frame ends, and a close frame once its header has passed', () => {
    fc.assert(
      fc.property(streams, ({ frames, cuts }) => {
        const { bytes, ends, closeHeaders } = encode(frames);
        const boundaries = createFrameBoundaries();
        for (const { start, chunk } of split(bytes, cuts)) {
          boundaries.read(chunk);
          const offset = start + chunk.length;
          expect(boundaries.atBoundary).toBe(ends.includes(offset) || offset === 0);
          expect(boundaries.closeSeen).toBe(closeHeaders.some((at) => at <= offset));
        }
        expect(boundaries.atBoundary).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('when the relay stops at any offset, then upToBoundary passes on exactly the rest of the frame in progress, over as many chunks as it takes', () => {
    fc.assert(
      fc.property(streams, fc.nat(), ({ frames, cuts }, stopAt) => {
        const { bytes, ends } = encode(frames);
        const stop = stopAt % (bytes.length + 1);
        const boundaries = createFrameBoundaries();
        boundaries.read(bytes.subarray(0, stop));
        let passed = stop;
        for (const { chunk } of split(bytes.subarray(stop), cuts)) {
          if (boundaries.atBoundary) break;
          const upTo = boundaries.upToBoundary(chunk);
          passed += upTo;
          if (upTo < chunk.length) expect(boundaries.atBoundary).toBe(true);
        }
        const next = ends.find((end) => end >= stop) ?? 0;
        expect(passed).toBe(stop === 0 ? 0 : next);
        expect(boundaries.atBoundary).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('when a header is split after its first byte, then no boundary is reported until the frame ends', () => {
    const boundaries = createFrameBoundaries();
    // A masked 64-bit-length frame header: 0x82, 0xff, 8 length bytes, 4 mask bytes; 65,536 payload bytes.
    const [header] = Sender.frame(Buffer.alloc(65_536), {
      fin: true,
      rsv1: false,
      opcode: 0x2,
      mask: true,
      readOnly: true,
    });
    boundaries.read((header as Buffer).subarray(0, 1));
    expect(boundaries.atBoundary).toBe(false);
    boundaries.read((header as Buffer).subarray(1, 14));
    expect(boundaries.upToBoundary(Buffer.alloc(65_535))).toBe(65_535);
    expect(boundaries.atBoundary).toBe(false);
    expect(boundaries.upToBoundary(Buffer.alloc(10))).toBe(1);
    expect(boundaries.atBoundary).toBe(true);
  });
});
