import { describe, expect, it } from 'vitest';
import { bindingFor, canonicalIp, ipMatches } from '../../src/caller/ip.js';
import { BrokerError } from '../../src/errors.js';

describe('canonicalIp', () => {
  it.each([
    ['a dotted quad', '203.0.113.7', '203.0.113.7'],
    ['the IPv4 edges', '0.0.0.0', '0.0.0.0'],
    ['255s', '255.255.255.255', '255.255.255.255'],
    ['IPv4-mapped IPv6 in mixed notation', '::ffff:203.0.113.7', '203.0.113.7'],
    ['IPv4-mapped IPv6 in hex notation', '::ffff:cb00:7107', '203.0.113.7'],
    ['IPv4-mapped IPv6 with leading zeros and capitals', '::FFFF:0102:0304', '1.2.3.4'],
    ['IPv4-mapped IPv6 written in full', '0:0:0:0:0:ffff:102:304', '1.2.3.4'],
    ['an uncompressed IPv6 address', '2001:DB8:0:0::1', '2001:db8::1'],
    ['a fully written IPv6 address', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['upper-case IPv6', '2001:DB8::ABCD', '2001:db8::abcd'],
    ['the longest zero run (RFC 5952 §4.2.3)', '2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['a single zero group, which is not compressed (§4.2.2)', '2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['the loopback', '::1', '::1'],
    ['the unspecified address', '::', '::'],
    ['a zone id', 'fe80::1%eth0', 'fe80::1'],
    ['a numeric zone id', 'FE80::1%2', 'fe80::1'],
  ])('when given %s, then it answers the canonical form', (_, input, expected) => {
    expect(canonicalIp(input)).toBe(expected);
  });

  it.each([
    ['three octets', '1.2.3'],
    ['an octet over 255', '999.1.1.1'],
    ['a mapped address with a bad octet', '::ffff:999.1.1.1'],
    ['leading zeros in IPv4', '01.2.3.4'],
    ['empty input', ''],
    ['surrounding spaces', ' 1.2.3.4 '],
    ['a host name', 'localhost'],
    ['a CIDR', '10.0.0.0/8'],
    ['a port', '1.2.3.4:80'],
    ['a bracketed IPv6', '[::1]'],
    ['too many IPv6 groups', '1:2:3:4:5:6:7:8:9'],
    ['two double colons', '1::2::3'],
  ])('when given %s, then it answers undefined', (_, input) => {
    expect(canonicalIp(input)).toBeUndefined();
  });

  it('when two spellings name one address, then their canonical forms are equal', () => {
    expect(canonicalIp('2001:DB8:0:0::1')).toBe(canonicalIp('2001:db8::1'));
    expect(canonicalIp('::ffff:1.2.3.4')).toBe(canonicalIp('::ffff:0102:0304'));
    expect(canonicalIp('::ffff:1.2.3.4')).toBe(canonicalIp('1.2.3.4'));
  });
});

describe('ipMatches', () => {
  it('when no prefix is bound, then only the same address matches, in any spelling', () => {
    expect(ipMatches({ ip: '203.0.113.7' }, '203.0.113.7')).toBe(true);
    expect(ipMatches({ ip: '203.0.113.7' }, '::ffff:203.0.113.7')).toBe(true);
    expect(ipMatches({ ip: '2001:db8::1' }, '2001:DB8:0:0::1')).toBe(true);
    expect(ipMatches({ ip: '203.0.113.7' }, '203.0.113.8')).toBe(false);
    expect(ipMatches({ ip: '2001:db8::1' }, '2001:db8::2')).toBe(false);
  });

  it('when bound to a /24, then the whole network matches and its neighbours do not', () => {
    const bound = { ip: '203.0.113.7', prefix: 24 };
    expect(ipMatches(bound, '203.0.113.0')).toBe(true);
    expect(ipMatches(bound, '203.0.113.255')).toBe(true);
    expect(ipMatches(bound, '::ffff:203.0.113.200')).toBe(true);
    expect(ipMatches(bound, '203.0.112.255')).toBe(false);
    expect(ipMatches(bound, '203.0.114.0')).toBe(false);
  });

  it('when bound to a /64, then the whole network matches and its neighbours do not', () => {
    const bound = { ip: '2001:db8:1:2::abcd', prefix: 64 };
    expect(ipMatches(bound, '2001:db8:1:2::')).toBe(true);
    expect(ipMatches(bound, '2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe(true);
    expect(ipMatches(bound, '2001:DB8:1:2:0:0:0:1')).toBe(true);
    expect(ipMatches(bound, '2001:db8:1:1:ffff:ffff:ffff:ffff')).toBe(false);
    expect(ipMatches(bound, '2001:db8:1:3::')).toBe(false);
  });

  it('when the prefix is the full length or zero, then it means the address or everything of that family', () => {
    expect(ipMatches({ ip: '10.0.0.1', prefix: 32 }, '10.0.0.1')).toBe(true);
    expect(ipMatches({ ip: '10.0.0.1', prefix: 32 }, '10.0.0.2')).toBe(false);
    expect(ipMatches({ ip: '10.0.0.1', prefix: 0 }, '192.0.2.1')).toBe(true);
    expect(ipMatches({ ip: '10.0.0.1', prefix: 0 }, '2001:db8::1')).toBe(false);
  });

  it('when an IPv4 binding meets an IPv6 caller or the reverse, then it never matches', () => {
    expect(ipMatches({ ip: '1.2.3.4' }, '::102:304')).toBe(false);
    expect(ipMatches({ ip: '1.2.3.4', prefix: 8 }, '2001:db8::1')).toBe(false);
    expect(ipMatches({ ip: '::ffff:0:0', prefix: 96 }, '1.2.3.4')).toBe(false);
    expect(ipMatches({ ip: '2001:db8::1', prefix: 16 }, '32.1.13.184')).toBe(false);
  });

  it('when an address or prefix is malformed, then it never matches', () => {
    expect(ipMatches({ ip: '1.2.3' }, '1.2.3')).toBe(false);
    expect(ipMatches({ ip: '1.2.3.4' }, '')).toBe(false);
    expect(ipMatches({ ip: '1.2.3.4', prefix: 33 }, '1.2.3.4')).toBe(false);
    expect(ipMatches({ ip: '1.2.3.4', prefix: -1 }, '1.2.3.4')).toBe(false);
    expect(ipMatches({ ip: '1.2.3.4', prefix: 24.5 }, '1.2.3.4')).toBe(false);
  });
});

describe('bindingFor', () => {
  const prefixes = { ipv4Prefix: 24, ipv6Prefix: 64 };

  it('when binding is off, then the token carries no address', () => {
    expect(bindingFor('off', '203.0.113.7', prefixes)).toBeUndefined();
  });

  it('when binding is exact, then the token carries the canonical address', () => {
    expect(bindingFor('exact', '::ffff:203.0.113.7', prefixes)).toEqual({ ip: '203.0.113.7' });
    expect(bindingFor('exact', '2001:DB8::1', prefixes)).toEqual({ ip: '2001:db8::1' });
  });

  it('when binding by prefix, then the prefix of the address family travels with the address', () => {
    expect(bindingFor('prefix', '203.0.113.7', prefixes)).toEqual({ ip: '203.0.113.7', ipPrefix: 24 });
    expect(bindingFor('prefix', '2001:db8::1', prefixes)).toEqual({ ip: '2001:db8::1', ipPrefix: 64 });
    expect(bindingFor('prefix', '203.0.113.7', { ipv4Prefix: 32, ipv6Prefix: 64 })).toEqual({
      ip: '203.0.113.7',
    });
  });

  it('when a binding is round-tripped through ipMatches, then the network matches and others do not', () => {
    const binding = bindingFor('prefix', '198.51.100.23', prefixes);
    const bound = { ip: binding?.ip ?? '', prefix: binding?.ipPrefix };
    expect(ipMatches(bound, '198.51.100.99')).toBe(true);
    expect(ipMatches(bound, '198.51.101.23')).toBe(false);
  });

  it('when the caller address cannot be read, then binding refuses with invalid_request', () => {
    expect(() => bindingFor('exact', 'unknown', prefixes)).toThrow(BrokerError);
    try {
      bindingFor('prefix', '', prefixes);
    } catch (error) {
      expect((error as BrokerError).code).toBe('invalid_request');
    }
    expect.assertions(2);
  });
});
