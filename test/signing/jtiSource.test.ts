import { describe, expect, it } from 'vitest';
import { createJtiSource } from '../../src/signing/jtiSource.js';

describe('jti source', () => {
  it('when jtis are drawn past several refills of the buffer, then each is 22 base64url characters and none repeats', () => {
    const next = createJtiSource();
    // 4 KiB holds 256 jtis: 2,000 cross seven refills.
    const jtis = Array.from({ length: 2_000 }, next);
    for (const jti of jtis) expect(jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(new Set(jtis).size).toBe(jtis.length);
  });

  it('when two sources draw, then they share no jti', () => {
    const first = Array.from({ length: 300 }, createJtiSource());
    const second = new Set(Array.from({ length: 300 }, createJtiSource()));
    expect(first.filter((jti) => second.has(jti))).toEqual([]);
  });
});
