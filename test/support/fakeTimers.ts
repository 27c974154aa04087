import type { ManualClock } from '../../src/clock.js';
import type { Scheduler } from '../../src/upstream/tokenCache.js';

/** Timers on the manual clock, for the cache's `schedule`: `advance` moves the clock and fires what fell due. */
export function createFakeTimers(clock: ManualClock) {
  const pending = new Set<{ at: number; callback: () => void }>();
  const schedule: Scheduler = (callback, ms) => {
    const timer = { at: clock.now() + ms, callback };
    pending.add(timer);
    return () => pending.delete(timer);
  };
  async function advance(ms: number): Promise<void> {
    clock.advance(ms);
    for (const timer of [...pending].sort((a, b) => a.at - b.at)) {
      if (timer.at > clock.now()) continue;
      pending.delete(timer);
      timer.callback();
    }
    // Let the promise chains the fired callbacks started settle before the test looks.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { schedule, advance, pending: () => pending.size };
}
