import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRotatingCipher, createValueCipher } from '../../src/store/encryption.js';

describe('a cache encryption key rotated by a reload', () => {
  const oldKey = randomBytes(32);
  const newKey = randomBytes(32);

  it('when the key is rotated, then values written under the old key still decrypt and new ones use the new key', () => {
    const cipher = createRotatingCipher(oldKey);
    const stored = cipher.encrypt('token-a', 'k');
    cipher.rotate(newKey);
    expect(cipher.decrypt(stored, 'k')).toBe('token-a');
    const rewritten = cipher.encrypt('token-b', 'k');
    expect(createValueCipher(newKey).decrypt(rewritten, 'k')).toBe('token-b');
    expect(() => createValueCipher(oldKey).decrypt(rewritten, 'k')).toThrow();
    expect(cipher.olderTagPrefixes('token-a', 'k')).toEqual([
      createValueCipher(oldKey).tagPrefix('token-a', 'k'),
    ]);
    expect(stored.startsWith(cipher.olderTagPrefixes('token-a', 'k')[0] ?? '-')).toBe(true);
  });

  it('when more keys are rotated in than are kept, then the oldest stops decrypting', () => {
    const cipher = createRotatingCipher(oldKey);
    const stored = cipher.encrypt('token', 'k');
    for (let i = 0; i < 4; i += 1) cipher.rotate(randomBytes(32));
    expect(() => cipher.decrypt(stored, 'k')).toThrow();
  });

  it('when the same key is given again, then nothing changes', () => {
    const cipher = createRotatingCipher(oldKey);
    cipher.rotate(Buffer.from(oldKey));
    expect(cipher.olderTagPrefixes('token', 'k')).toEqual([]);
  });
});
