import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createWindowCounters } from '../../src/store/windowCounters.js';

describe('window counters', () => {
  it('when 100,000 distinct keys are counted, then no more than the cap are held, the oldest windows forgotten first', () => {
    const clock = createManualClock();
    const store = createWindowCounters({ clock, windowMs: 3_600_000, maxKeys: 1_000 });
    for (let n = 0; n < 100_000; n++) store.increment(`k${n}`);
    const held = Array.from({ length: 100_000 }, (_, n) => `k${n}`).filter((key) => store.get(key));
    expect(held).toHaveLength(1_000);
    expect(held[0]).toBe('k99000');
  });

  it('when a key is counted again in its window, then it keeps its count and is not made younger', () => {
    const clock = createManualClock();
    const store = createWindowCounters({ clock, windowMs: 60_000, maxKeys: 2 });
    store.increment('a');
    clock.advance(1_000);
    store.increment('b');
    expect(store.increment('a')).toMatchObject({ totalHits: 2 });
    store.increment('c');
    expect(store.get('a')).toBeUndefined();
    expect(store.get('b')).toMatchObject({ totalHits: 1 });
  });

  it('when a window passes, then the key starts again at one and passed windows leave before live ones', () => {
    const clock = createManualClock();
    const store = createWindowCounters({ clock, windowMs: 60_000, maxKeys: 3 });
    store.increment('a');
    store.increment('a');
    clock.advance(30_000);
    store.increment('b');
    clock.advance(30_000);
    expect(store.get('a')).toBeUndefined();
    expect(store.increment('a')).toMatchObject({ totalHits: 1, resetTime: new Date(clock.now() + 60_000) });
    store.increment('c');
    store.increment('d');
    expect(store.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].map((key) => store.get(key)?.totalHits)).toEqual([1, 1, 1]);
  });
});
