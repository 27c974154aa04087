import { describe, expect, it, onTestFinished } from 'vitest';
import { createRedisConnections } from '../../src/store/redisConnection.js';
import { freePort } from '../support/freePort.js';
import { captureLogs, registerSecret } from '../support/logs.js';
import { singleRedis } from '../support/redisServers.js';
import { missing } from '../support/requires.js';
import { waitFor } from '../support/waiting.js';

const noRedis = await missing('redis');

function connect(url: string) {
  const logs = captureLogs();
  const connections = createRedisConnections({
    target: singleRedis(url),
    logger: logs.logger,
    maxReconnectDelayMs: 100,
  });
  onTestFinished(() => connections.close());
  return { logs, connections };
}

describe('Redis connection messages', () => {
  it('when nothing listens at REDIS_URL at start-up, then the warning names the address and the cause', async () => {
    const port = await freePort();
    const { logs, connections } = connect(`redis://127.0.0.1:${port}`);
    expect(await connections.ready(300)).toBe('degraded');
    const warning = logs
      .lines()
      .find((line) => String(line.msg).startsWith('redis not reachable at start-up'));
    expect(warning).toMatchObject({
      level: 'warn',
      msg: `redis not reachable at start-up (one server at 127.0.0.1:${port}): starting in degraded mode`,
      redis: `one server at 127.0.0.1:${port}`,
    });
    expect(String(warning?.cause)).toContain('ECONNREFUSED');
  });

  it.skipIf(noRedis)(
    'when Redis refuses the credentials, then one error line says so, naming the address and not the password',
    async () => {
      const password = registerSecret('wrong redis password', 'wrong-redis-password-7Hq2Lx9');
      // The shared Redis has ACLs: an unknown user is refused with WRONGPASS, which no reconnection heals.
      const { logs } = connect(`redis://nobody-${Date.now()}:${password}@127.0.0.1:6379`);
      await waitFor(() => logs.lines().some((line) => line.level === 'error'));
      const errors = logs.lines().filter((line) => line.level === 'error');
      expect(errors[0]).toMatchObject({
        msg: 'redis refuses the broker or cannot be found: check REDIS_* settings',
        redis: 'one server at 127.0.0.1:6379',
      });
      expect(String(errors[0]?.cause)).toMatch(/WRONGPASS/);
      expect(JSON.stringify(logs.lines())).not.toContain(password);
    },
  );
});
