/**
 * Lua that increments the counter at `key` and leaves it in the local `count`, raised above `floor` (the
 * highest value this replica has seen) when Redis lost the counter, then sets it to expire after `ttlMs`.
 * A counter that restarted empty must not hand out values already handed out: fences that would let a
 * stale lock holder pass for a newer one (redisLock.ts), or a quota already spent (upstream/quota.ts).
 * The arguments name Lua expressions (`KEYS[1]`, `ARGV[2]`), not values.
 */
export function incrementAboveFloor({
  key,
  floor,
  ttlMs,
}: {
  key: string;
  floor: string;
  ttlMs: string;
}): string {
  return `
local count = redis.call('INCR', ${key})
local floor = tonumber(${floor})
if count <= floor then
  count = floor + 1
  redis.call('SET', ${key}, count)
end
redis.call('PEXPIRE', ${key}, ${ttlMs})`;
}
