import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * IPv6 addresses a test connects from, on `lo`, in a unique local prefix of the tests' own
 * (fd7b:6b72:6f6b::/48, RFC 4193), so no real network is shadowed. `.ci/run` adds the same ones.
 * `sameNetwork` lie in one `/56` (fd7b:6b72:6f6b:0::/56), `otherNetwork` in the next.
 */
export const testAddresses = {
  sameNetwork: ['fd7b:6b72:6f6b:1::1', 'fd7b:6b72:6f6b:ff::1'],
  otherNetwork: 'fd7b:6b72:6f6b:100::1',
} as const;

/** Whether a socket can be bound to `address` on this machine now. */
function bindable(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(0, address, () => server.close(() => resolve(true)));
  });
}

/**
 * Makes `addresses` bindable by adding to `lo` (`ip -6 addr add … nodad`, which needs root) those that are
 * not; resolves to a function that removes what this call added. An AnyIP route
 * (`ip -6 route add local <prefix> dev lo`) is not enough for IPv6: binding then also needs
 * `net.ipv6.ip_nonlocal_bind=1`, a switch for every process on the machine.
 */
export async function addLoopbackAddresses(addresses: readonly string[]): Promise<() => Promise<void>> {
  const added: string[] = [];
  const remove = async () => {
    for (const address of added.splice(0)) {
      await run('ip', ['-6', 'addr', 'del', `${address}/128`, 'dev', 'lo']);
    }
  };
  try {
    for (const address of addresses) {
      if (await bindable(address)) continue;
      await run('ip', ['-6', 'addr', 'add', `${address}/128`, 'dev', 'lo', 'nodad']);
      added.push(address);
    }
  } catch (error) {
    await remove();
    throw error;
  }
  return remove;
}
