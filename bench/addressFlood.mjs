/**
 * `npm run bench:addresses`: the memory of the per-address rate limits under a flood of distinct
 * addresses (issue #24). Starts a broker process trusting loopback's `X-Forwarded-For`, sends
 * FLOOD_REQUESTS (1,000,000) unauthenticated `/api/proxy/x` calls, each from a new IPv6 `/56`, and prints
 * the broker's RSS every 10 % as one JSON line; the last line compares the second half's growth with the
 * first's. Every call is answered 401 after the proxy limit counted its address.
 */
import { Agent, request } from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rssBytes, startBroker, stop } from './lib/processes.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const total = Number(process.env.FLOOD_REQUESTS ?? 1_000_000);
const connections = 32;
const tsx = pathToFileURL(`${root}node_modules/tsx/dist/loader.mjs`).href;

const broker = await startBroker(
  `${root}src/main.ts`,
  {
    LOG_LEVEL: 'warn',
    TRUST_PROXY: 'loopback',
    UPSTREAM_TOKEN_URL: 'http://127.0.0.1:9/token',
    UPSTREAM_CLIENT_ID: 'flood',
    UPSTREAM_CLIENT_SECRET: 'flood-secret-not-used',
    UPSTREAM_API_URL: 'http://127.0.0.1:9/',
    ...(process.env.RATE_LIMIT_MAX_ADDRESSES
      ? { RATE_LIMIT_MAX_ADDRESSES: process.env.RATE_LIMIT_MAX_ADDRESSES }
      : {}),
  },
  { nodeArgs: ['--import', tsx] },
);
const { port } = new URL(broker.url);
const agent = new Agent({ keepAlive: true, maxSockets: connections });
// n's 24 low bits fill bits 32–55, so each n is its own /56.
const address = (n) => `2001:db8:${((n >>> 8) & 0xffff).toString(16)}:${((n & 0xff) << 8).toString(16)}::1`;
const call = (n) =>
  new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/api/proxy/x', agent, headers: { 'x-forwarded-for': address(n) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end();
  });

const samples = [{ requests: 0, rssMb: (await rssBytes(broker.child.pid)) / 2 ** 20 }];
const statuses = {};
let next = 0;
let done = 0;
const started = performance.now();
async function worker() {
  while (next < total) {
    const status = await call(next++);
    statuses[status] = (statuses[status] ?? 0) + 1;
    done += 1;
    if (done % (total / 10) === 0) {
      const sample = { requests: done, rssMb: Math.round((await rssBytes(broker.child.pid)) / 2 ** 20) };
      samples.push(sample);
      process.stdout.write(
        `${JSON.stringify({ ...sample, seconds: Math.round((performance.now() - started) / 1000) })}\n`,
      );
    }
  }
}
await Promise.all(Array.from({ length: connections }, worker));
await stop(broker.child);
agent.destroy();
const mid = samples[Math.floor(samples.length / 2)].rssMb;
const end = samples.at(-1).rssMb;
process.stdout.write(
  `${JSON.stringify({ statuses, firstHalfMb: mid - samples[0].rssMb, secondHalfMb: end - mid, startMb: Math.round(samples[0].rssMb), endMb: end })}\n`,
);
