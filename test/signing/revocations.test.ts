import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { createRevocationList, type RevocationList, revocationKey } from '../../src/signing/revocations.js';
import type { KeyValueStore } from '../../src/store/types.js';

const jti = () => randomBytes(16).toString('base64url');

/** Records writes; revocations never read it back (the local mirror answers). */
function recordingStore(): KeyValueStore & { writes: { key: string; value: string; ttlMs: number }[] } {
  const writes: { key: string; value: string; ttlMs: number }[] = [];
  return {
    writes,
    get: async () => undefined,
    set: async (key, value, ttlMs) => {
      writes.push({ key, value, ttlMs });
    },
    delete: async () => undefined,
    close: async () => undefined,
  };
}

const lists: RevocationList[] = [];
afterEach(() => {
  for (const list of lists.splice(0)) list.close();
});

function setup(options: { store?: KeyValueStore; clockToleranceSeconds?: number } = {}) {
  const clock = createManualClock();
  const list = createRevocationList({ clock, clockToleranceSeconds: 5, ...options });
  lists.push(list);
  return { clock, list, nowSeconds: () => Math.floor(clock.now() / 1000) };
}

describe('revocation list', () => {
  it('when a jti is revoked, then it is revoked and others are not', async () => {
    const { list, nowSeconds } = setup();
    const revoked = jti();
    await list.revoke(revoked, nowSeconds() + 900);
    expect(list.isRevoked(revoked)).toBe(true);
    expect(list.isRevoked(jti())).toBe(false);
    expect(list.size()).toBe(1);
  });

  it('when the token has expired past the tolerance, then the revocation is forgotten and the size shrinks', async () => {
    const { clock, list, nowSeconds } = setup();
    const early = jti();
    const late = jti();
    await list.revoke(early, nowSeconds() + 60);
    await list.revoke(late, nowSeconds() + 900);
    expect(list.size()).toBe(2);
    clock.advance(64_000);
    expect(list.isRevoked(early)).toBe(true);
    expect(list.size()).toBe(2);
    clock.advance(1_000);
    expect(list.isRevoked(early)).toBe(false);
    expect(list.size()).toBe(1);
    expect(list.isRevoked(late)).toBe(true);
  });

  it('when a jti is revoked twice, then the later expiry wins', async () => {
    const { clock, list, nowSeconds } = setup();
    const id = jti();
    await list.revoke(id, nowSeconds() + 900);
    await list.revoke(id, nowSeconds() + 60);
    clock.advance(120_000);
    expect(list.isRevoked(id)).toBe(true);
    expect(list.size()).toBe(1);
    clock.advance(800_000);
    expect(list.isRevoked(id)).toBe(false);
    expect(list.size()).toBe(0);
  });

  it('when the token has already expired, then revoking it keeps nothing', async () => {
    const { list, nowSeconds } = setup();
    await list.revoke(jti(), nowSeconds() - 60);
    expect(list.size()).toBe(0);
  });

  it('when 100k tokens with short lives are revoked and the clock moves on, then memory is given back', async () => {
    const { clock, list, nowSeconds } = setup();
    const ids: string[] = [];
    for (let index = 0; index < 100_000; index += 1) {
      const id = `jti-${index}`;
      ids.push(id);
      // Spread the expiries so the heap holds them out of order.
      list.remember(id, nowSeconds() + 10 + (index % 50));
    }
    expect(list.size()).toBe(100_000);
    clock.advance(30_000);
    const halfway = list.size();
    expect(halfway).toBeGreaterThan(0);
    expect(halfway).toBeLessThan(100_000);
    clock.advance(60_000);
    expect(list.size()).toBe(0);
    expect(ids.some((id) => list.isRevoked(id))).toBe(false);
    await list.revoke('fresh', nowSeconds() + 900);
    expect(list.size()).toBe(1);
  });

  it('when a store is given, then revoke writes the jti (never a token) until exp plus tolerance', async () => {
    const store = recordingStore();
    const { list, nowSeconds } = setup({ store });
    const id = jti();
    const exp = nowSeconds() + 900;
    await list.revoke(id, exp);
    expect(store.writes).toEqual([{ key: revocationKey(id), value: String(exp), ttlMs: 905_000 }]);
    expect(revocationKey(id)).toBe(`revoked:${id}`);
  });

  it('when a revocation is learnt from another replica, then it applies locally without writing the store', () => {
    const store = recordingStore();
    const { list, nowSeconds } = setup({ store });
    const id = jti();
    list.remember(id, nowSeconds() + 900);
    expect(list.isRevoked(id)).toBe(true);
    expect(store.writes).toEqual([]);
  });

  it('when no tolerance is given, then revocations outlive exp by the largest configurable tolerance', async () => {
    const clock = createManualClock();
    const list = createRevocationList({ clock });
    lists.push(list);
    const id = jti();
    await list.revoke(id, Math.floor(clock.now() / 1000));
    clock.advance(299_000);
    expect(list.isRevoked(id)).toBe(true);
    clock.advance(1_000);
    expect(list.isRevoked(id)).toBe(false);
  });
});

describe('revocation listeners', () => {
  it('when a jti is revoked here or remembered from the fleet, then each listener hears it once, and an unsubscribed one does not', async () => {
    const { list, clock } = setup();
    const exp = Math.floor(clock.now() / 1000) + 60;
    const heard: string[] = [];
    const gone: string[] = [];
    list.onRevoked((id) => heard.push(id));
    const unsubscribe = list.onRevoked((id) => gone.push(id));
    unsubscribe();
    const [local, remote] = [jti(), jti()];
    await list.revoke(local, exp);
    list.remember(remote, exp);
    // Again, with a later deadline: not news.
    list.remember(remote, exp + 10);
    // Already expired: never revoked, so nobody is told.
    list.remember(jti(), exp - 3600);
    expect(heard).toEqual([local, remote]);
    expect(gone).toEqual([]);
  });
});
