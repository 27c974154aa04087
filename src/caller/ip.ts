import { BlockList, isIP, SocketAddress } from 'node:net';
import { BrokerError } from '../errors.js';

/** What a client token is bound to: an address, and optionally how many leading bits must match. */
export interface IpBinding {
  ip: string;
  prefix?: number;
}

/** Node prints IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2) in mixed notation whatever the input spelling. */
const mappedIpv4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

/**
 * One spelling per address, so the address at mint time and at use time compare as strings:
 * - IPv4 stays a dotted quad (node's `isIP` refuses `1.2.3`, `01.2.3.4`, `999.1.1.1`);
 * - IPv4-mapped IPv6 (`::ffff:1.2.3.4`, `::ffff:0102:0304`) becomes the IPv4 address, because a
 *   dual-stack socket reports IPv4 callers that way;
 * - IPv6 is lower-cased and compressed as RFC 5952 §4 says (node's formatter);
 * - a zone id (`fe80::1%eth0`, RFC 6874) is dropped: it names an interface of the host that saw the
 *   packet, not part of the caller's address, and differs between replicas.
 * Anything else gives undefined.
 */
export function canonicalIp(address: string): string | undefined {
  const family = isIP(address);
  if (family === 4) return address;
  if (family !== 6) return undefined;
  const formatted = new SocketAddress({ address, family: 'ipv6' }).address;
  return mappedIpv4.exec(formatted)?.[1] ?? formatted;
}

/**
 * Whether the caller's address satisfies a binding: the same address, or with `prefix` the same
 * /prefix network. An IPv4 binding never matches an IPv6 caller and vice versa (mapped addresses are
 * folded to IPv4 first), and a malformed address never matches.
 */
export function ipMatches(bound: IpBinding, caller: string): boolean {
  const boundIp = canonicalIp(bound.ip);
  const callerIp = canonicalIp(caller);
  if (!boundIp || !callerIp) return false;
  const family = isIP(boundIp) === 4 ? 'ipv4' : 'ipv6';
  if (isIP(callerIp) !== isIP(boundIp)) return false;
  if (bound.prefix === undefined) return boundIp === callerIp;
  const bits = family === 'ipv4' ? 32 : 128;
  if (!Number.isInteger(bound.prefix) || bound.prefix < 0 || bound.prefix > bits) return false;
  // BlockList does the bit arithmetic; the family check above matters because BlockList itself
  // matches IPv4 addresses against IPv4-mapped IPv6 subnets.
  const network = new BlockList();
  network.addSubnet(boundIp, bound.prefix, family);
  return network.check(callerIp, family);
}

export type BindMode = 'exact' | 'prefix' | 'off';

/**
 * What to write into a client token for a caller: nothing (`off`), the canonical address (`exact`), or
 * the canonical address plus a prefix length (`prefix`: /ipv4Prefix for IPv4, /ipv6Prefix for IPv6),
 * so callers whose address changes within their network (IPv6 privacy addresses, carrier NAT pools)
 * keep their token. The token holds the caller's full address; `ip_prefix` says how much of it counts.
 * Throws `invalid_request` when the address cannot be read: an unbound token would silently fail open.
 */
export function bindingFor(
  mode: BindMode,
  callerIp: string,
  { ipv4Prefix, ipv6Prefix }: { ipv4Prefix: number; ipv6Prefix: number },
): { ip: string; ipPrefix?: number } | undefined {
  if (mode === 'off') return undefined;
  const ip = canonicalIp(callerIp);
  if (!ip) throw new BrokerError('invalid_request', { detail: 'the caller address could not be determined' });
  if (mode === 'exact') return { ip };
  const [prefix, bits] = isIP(ip) === 4 ? [ipv4Prefix, 32] : [ipv6Prefix, 128];
  return prefix >= bits ? { ip } : { ip, ipPrefix: prefix };
}
