import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createMemoryStore } from '../../src/store/memoryStore.js';

describe('memory store', () => {
  it('when a value is read before its TTL, then it is returned; at its TTL, then it is gone', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    await store.set('k', 'v', 1_000);
    clock.advance(999);
    expect(await store.get('k')).toBe('v');
    clock.advance(1);
    expect(await store.get('k')).toBeUndefined();
  });

  it('when a key is written again, then the new value and the new TTL apply', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    await store.set('k', 'old', 1_000);
    await store.set('k', 'new', 5_000);
    clock.advance(2_000);
    expect(await store.get('k')).toBe('new');
  });

  it('when a key is deleted or set with a TTL of zero, then it reads as missing', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    await store.set('a', '1', 1_000);
    await store.set('b', '2', 1_000);
    await store.delete('a');
    await store.set('b', '3', 0);
    expect(await store.get('a')).toBeUndefined();
    expect(await store.get('b')).toBeUndefined();
  });

  it('when the store is full and entries have expired, then they are swept before any live entry is evicted', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock, maxEntries: 3 });
    await store.set('short-1', 'x', 100);
    await store.set('long', 'y', 10_000);
    await store.set('short-2', 'x', 100);
    clock.advance(100);
    await store.set('new-1', 'z', 10_000);
    await store.set('new-2', 'z', 10_000);
    expect(await store.get('long')).toBe('y');
    expect(await store.get('new-1')).toBe('z');
    expect(await store.get('new-2')).toBe('z');
  });

  it('when the store is full of live entries, then the oldest written one is evicted and the size stays bounded', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock, maxEntries: 2 });
    await store.set('first', '1', 10_000);
    await store.set('second', '2', 10_000);
    await store.set('third', '3', 10_000);
    expect(await store.get('first')).toBeUndefined();
    expect(await store.get('second')).toBe('2');
    expect(await store.get('third')).toBe('3');
  });

  it('when the store is closed, then every entry is dropped', async () => {
    const clock = createManualClock();
    const store = createMemoryStore({ clock });
    await store.set('k', 'v', 1_000);
    await store.close();
    expect(await store.get('k')).toBeUndefined();
  });
});
