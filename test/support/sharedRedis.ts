import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { present } from './requires.js';

/** The Redis every machine of this project runs; suites that stop or reconfigure Redis start their own (redisServers.ts). */
export const sharedRedisUrl = 'redis://127.0.0.1:6379';

export interface SharedRedisScratch {
  /** A key prefix no other file or run uses: `tb-test-<label>-<random>:`. */
  prefix(): string;
  /** A connection of the file's own, for looking at and changing keys behind the broker's back. */
  admin: Redis;
}

/**
 * Room on the shared Redis for one test file: prefixes of its own, whose keys are deleted after the file
 * (other runs' keys are never touched), and an admin connection closed with them. Call at the file's top level.
 */
export function sharedRedisScratch(label: string): SharedRedisScratch {
  const prefixes: string[] = [];
  const admin = new Redis(sharedRedisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  afterAll(async () => {
    if (await present('redis')) {
      for (const prefix of prefixes) {
        const keys = await admin.keys(`${prefix}*`);
        if (keys.length > 0) await admin.del(...keys);
      }
    }
    admin.disconnect();
  });
  return {
    prefix() {
      const prefix = `tb-test-${label}-${randomBytes(6).toString('hex')}:`;
      prefixes.push(prefix);
      return prefix;
    },
    admin,
  };
}
