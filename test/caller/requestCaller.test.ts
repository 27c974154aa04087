import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalIp } from '../../src/caller/ip.js';
import { createCallerReader } from '../../src/caller/requestCaller.js';
import type { Config } from '../../src/config/index.js';
import { call } from '../support/rawCall.js';

/**
 * The direct lane reads the caller's address, scheme and host without Express (caller/requestCaller.ts). Each
 * request here is answered by a real Express app whose `trust proxy` is the same setting: what Express
 * derives (`req.ip`, `req.ips`, `req.protocol`, `req.host`) and what the reader derives must agree.
 */

const settings: Config['trustProxy'][] = [
  false,
  1,
  2,
  ['loopback'],
  ['10.0.0.0/8'],
  ['127.0.0.1', '10.0.0.0/8'],
];

const headerSets: Record<string, string>[] = [
  {},
  { 'x-forwarded-for': '203.0.113.7' },
  {
    'x-forwarded-for': '203.0.113.7, 10.0.0.5',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'app.example.com',
  },
  { 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 10.1.2.3', 'x-forwarded-proto': 'https, http' },
  { 'x-forwarded-for': 'not-an-ip, 10.0.0.5', 'x-forwarded-host': 'a.example.com:8443, b.example.com' },
  { 'x-forwarded-for': '2001:db8::1, ::ffff:10.0.0.9', 'x-forwarded-host': '' },
];

function refusedAsNull(read: () => string): string | null {
  try {
    return read();
  } catch (error) {
    expect((error as { code?: string }).code).toBe('invalid_request');
    return null;
  }
}

const servers: Server[] = [];
const urls = new Map<Config['trustProxy'], string>();

beforeAll(async () => {
  for (const setting of settings) {
    const reader = createCallerReader(setting);
    const app = express();
    app.set('trust proxy', setting);
    app.get('/', (req, res) => {
      res.json({
        express: {
          // A forwarded entry that is no address (`not-an-ip`) is refused by the reader, as callers before it did.
          ip: canonicalIp(req.ip ?? '') ?? null,
          forwardedFor: [...req.ips, req.socket.remoteAddress ?? ''].map(
            (address) => canonicalIp(address) ?? address,
          ),
          protocol: req.protocol,
          host: req.host,
        },
        reader: {
          ip: refusedAsNull(() => reader.ip(req)),
          forwardedFor: reader.forwardedFor(req),
          protocol: reader.protocol(req),
          host: reader.host(req),
        },
      });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    servers.push(server);
    urls.set(setting, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
});

afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('the caller reader agrees with Express', () => {
  for (const setting of settings) {
    it(`when TRUST_PROXY is ${JSON.stringify(setting)}, then address, chain, scheme and host match Express's`, async () => {
      for (const headers of headerSets) {
        const answer = (
          await call(urls.get(setting) ?? '', '/', { headers: { host: 'broker.internal:8080', ...headers } })
        ).json();
        expect(answer.reader, JSON.stringify(headers)).toEqual(answer.express);
      }
    });
  }

  it('when proxies are trusted, then the forwarded values are taken; when not, they are ignored', async () => {
    const headers = {
      host: 'broker.internal:8080',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'app.example.com',
    };
    const trusted = (await call(urls.get(1) ?? '', '/', { headers })).json().reader;
    const untrusted = (await call(urls.get(false) ?? '', '/', { headers })).json().reader;

    expect(trusted).toEqual({
      ip: '203.0.113.7',
      forwardedFor: ['203.0.113.7', '127.0.0.1'],
      protocol: 'https',
      host: 'app.example.com',
    });
    expect(untrusted).toEqual({
      ip: '127.0.0.1',
      forwardedFor: ['127.0.0.1'],
      protocol: 'http',
      host: 'broker.internal:8080',
    });
  });
});
