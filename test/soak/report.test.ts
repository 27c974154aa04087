import { describe, expect, it } from 'vitest';
import { memoryFigures, type Sampler } from './report.js';

/** A replica sampled every 5 s for 10 minutes: a flat level with the heap's sawtooth of ±15 MB on top. */
function sawtooth(levelMb: (seconds: number) => number): Sampler {
  const rss = Array.from({ length: 121 }, (_, index) => {
    const seconds = index * 5;
    const tooth = ((index % 7) - 3) * 5;
    return { at: seconds * 1000, bytes: (levelMb(seconds) + tooth) * 1e6 };
  });
  return {
    incarnations: [{ replica: 'a', pid: 1, startedAt: 0, rss, maxLagSeconds: 0 }],
    scrape: async () => undefined,
    stop: () => undefined,
  };
}

describe('soak memory figures', () => {
  it("when RSS only rides the collector's sawtooth, then the growth reads as none", () => {
    const [figure] = memoryFigures(
      sawtooth(() => 150),
      0,
      60_000,
    );
    expect(Math.abs(figure?.growthPercent ?? Number.NaN)).toBeLessThan(3);
  });

  it('when RSS climbs steadily, then the growth is the climb', () => {
    const [figure] = memoryFigures(
      sawtooth((seconds) => 150 + seconds / 10),
      0,
      60_000,
    );
    // From about 156 MB a minute in to about 207 MB at the end, less the windows' half-widths.
    expect(figure?.growthPercent).toBeGreaterThan(25);
    expect(figure?.growthPercent).toBeLessThan(35);
  });
});
