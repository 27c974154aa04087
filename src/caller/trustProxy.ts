import { BlockList, isIP, SocketAddress } from 'node:net';

/** What one `TRUST_PROXY` list entry becomes: the spelling handed to proxy-addr, or why it is refused. */
export type TrustEntry = { entry: string; problem?: undefined } | { entry?: undefined; problem: string };

const namedRanges = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** Node prints IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2) in mixed notation whatever the input spelling. */
const mappedIpv4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

/**
 * Checks one `TRUST_PROXY` entry (an address, a CIDR, or `loopback`/`linklocal`/`uniquelocal`) and returns
 * the spelling that means the same to every proxy-addr version (which Express's `trust proxy` also uses):
 * - a prefix length must be 1..32 (IPv4) or 1..128 (IPv6): `/0` would trust every peer, and proxy-addr
 *   throws at start-up on one out of range;
 * - an IPv4-mapped entry (`::ffff:10.0.0.0/104`) is rewritten to the IPv4 range it names (`10.0.0.0/8`).
 *   With a prefix of /96 or shorter (`::ffff:10.0.0.0/8`, a common slip for `10.0.0.0/8`) it is refused:
 *   proxy-addr up to 2.0.7 matched every IPv4 peer against such a range as a mapped address and trusted
 *   them all, so the client's own `X-Forwarded-For` entry became `req.ip`; 2.0.8 trusts none of them;
 * - an IPv6 range that contains the whole mapped block `::ffff:0:0/96` (`::/8`) is refused for the same
 *   reason.
 */
export function parseTrustEntry(raw: string): TrustEntry {
  const entry = raw.trim().toLowerCase();
  if (namedRanges.has(entry)) return { entry };
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const bitsText = slash < 0 ? undefined : entry.slice(slash + 1);
  const family = isIP(address);
  if (family === 0 || (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText))) {
    return { problem: `"${raw}" is not an IP address, CIDR or loopback/linklocal/uniquelocal` };
  }
  const max = family === 4 ? 32 : 128;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (bits < 1 || bits > max) {
    return { problem: `"${raw}": the prefix length must be 1..${max} (/0 would trust every peer)` };
  }
  if (family === 4) return { entry };

  const [withoutZone = ''] = address.split('%');
  const mapped = mappedIpv4.exec(new SocketAddress({ address: withoutZone, family: 'ipv6' }).address)?.[1];
  if (mapped) {
    if (bits <= 96) {
      return {
        problem: `"${raw}" is an IPv4-mapped range covering every IPv4 peer on some proxy-addr versions; write the IPv4 range itself (e.g. 10.0.0.0/8)`,
      };
    }
    return { entry: bits === 128 ? mapped : `${mapped}/${bits - 96}` };
  }
  if (bits < 96) {
    const range = new BlockList();
    range.addSubnet(withoutZone, bits, 'ipv6');
    if (range.check('::ffff:0:0', 'ipv6')) {
      return {
        problem: `"${raw}" contains every IPv4-mapped address (::ffff:0:0/96), so some proxy-addr versions would trust every IPv4 peer; narrow it`,
      };
    }
  }
  return { entry };
}
