import { describe, expect, it } from 'vitest';
import {
  formatMarkdownTable,
  formatTable,
  growthPercent,
  loopRatio,
  median,
  ratio,
  summarise,
  target,
} from '../../bench/lib/stats.mjs';

const round = (requestsPerSecond: number, p50Ms: number, p99Ms: number, errors = 0) => ({
  requestsPerSecond,
  p50Ms,
  p99Ms,
  errors,
});

describe('bench statistics', () => {
  it('when rounds are summarised, then each measure is the median of the rounds and errors add up', () => {
    const row = summarise('B', [round(3000, 9, 30), round(1000, 20, 90, 2), round(2500.4, 10, 40, 1)]);

    expect(row).toMatchObject({
      name: 'B',
      rounds: 3,
      requestsPerSecond: 2500,
      p50Ms: 10,
      p99Ms: 40,
      errors: 3,
    });
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow();
  });

  it('when a row spends more event-loop time per request than its baseline, then its loop ratio is below 1', () => {
    expect(loopRatio({ loopMicrosPerRequest: 400 }, { loopMicrosPerRequest: 300 })).toBe(0.75);
    expect(loopRatio({ loopMicrosPerRequest: 200 }, { loopMicrosPerRequest: 300 })).toBe(1.5);
    expect(loopRatio({ loopMicrosPerRequest: Number.NaN }, { loopMicrosPerRequest: 300 })).toBeNaN();
  });

  it('when a row is compared with its baseline, then the ratio is its share of the baseline throughput', () => {
    expect(ratio({ requestsPerSecond: 4250 }, { requestsPerSecond: 5000 })).toBe(0.85);
    expect(ratio({ requestsPerSecond: 1 }, { requestsPerSecond: 3 })).toBe(0.33);
  });

  it('when targets are checked, then the limit itself passes for >= and <= and a non-finite value fails', () => {
    expect(target('t', 0.85, '>=', 0.85).passed).toBe(true);
    expect(target('t', 0.84, '>=', 0.85).passed).toBe(false);
    expect(target('t', 1, '<=', 1).passed).toBe(true);
    expect(target('t', 10, '<', 10).passed).toBe(false);
    expect(target('t', 1, '==', 1).passed).toBe(true);
    expect(target('t', Number.NaN, '<', 10).passed).toBe(false);
  });

  it('when memory grows from 100 to 109.5, then the growth is 9.5 %', () => {
    expect(growthPercent(100, 109.5)).toBe(9.5);
    expect(growthPercent(200, 190)).toBe(-5);
  });

  it('when rows are formatted, then columns line up and the Markdown table has a header rule', () => {
    const rows = [
      { scenario: 'A', 'req/s': 5000 },
      { scenario: 'B EdDSA', 'req/s': 4300 },
    ];

    expect(formatTable(rows).split('\n')).toEqual([
      'scenario  req/s',
      '--------  -----',
      'A         5000',
      'B EdDSA   4300',
    ]);
    expect(formatMarkdownTable(rows).split('\n')).toEqual([
      '| scenario | req/s |',
      '| --- | --- |',
      '| A | 5000 |',
      '| B EdDSA | 4300 |',
    ]);
  });
});
