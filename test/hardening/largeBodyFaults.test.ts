import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort } from '../support/apiServers.js';
import { type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';

/**
 * Issue #12 defect 2: a proxied request whose body is too large to replay, sent to an API that is down or
 * too slow, must be answered 503 `upstream_unavailable` or 504 `upstream_timeout` (never 500), whatever the
 * body's size and whether it is chunked.
 */

const origin = 'https://app.example.com';
const maxReplayBytes = 1024;
const sizes = [0, 100, maxReplayBytes, maxReplayBytes + 1, 256 * 1024];

let dead: FakeUpstreamBroker;
let slow: FakeUpstreamBroker;
let slowApi: Server;
const tokens = new Map<FakeUpstreamBroker, string>();

async function mint(target: FakeUpstreamBroker): Promise<string> {
  const minted = await target.request({ path: '/api/client-token', headers: { origin } });
  expect(minted.status).toBe(200);
  return registerSecret('large body client token', (JSON.parse(minted.body) as { token: string }).token);
}

/** Sends `size` bytes, with Content-Length or chunked; resolves with the status and problem code. */
async function upload(target: FakeUpstreamBroker, size: number, chunked: boolean) {
  const bytes = Buffer.alloc(size, 0x61);
  const body = chunked ? Readable.from([bytes.subarray(0, size >> 1), bytes.subarray(size >> 1)]) : bytes;
  const answer = await request(`${target.url}/api/proxy/upload`, {
    method: 'POST',
    headers: {
      origin,
      authorization: `Bearer ${tokens.get(target)}`,
      'content-type': 'application/octet-stream',
      ...(chunked ? {} : { 'content-length': String(size) }),
    },
    body,
  });
  const text = await answer.body.text();
  return { status: answer.statusCode, code: (JSON.parse(text) as { code?: string }).code };
}

beforeAll(async () => {
  const port = await closedPort();
  slowApi = createServer((req) => {
    // Reads the body, never answers.
    req.resume();
  });
  await new Promise<void>((resolve) => slowApi.listen(0, '127.0.0.1', resolve));
  const env = { PROXY_MAX_REPLAY_BYTES: String(maxReplayBytes), UPSTREAM_API_TIMEOUT_MS: '1000' };
  dead = await startBroker({
    upstream: 'fake',
    env: { ...env, UPSTREAM_API_URL: `http://127.0.0.1:${port}/` },
  });
  slow = await startBroker({
    upstream: 'fake',
    env: { ...env, UPSTREAM_API_URL: `http://127.0.0.1:${(slowApi.address() as AddressInfo).port}/` },
  });
  tokens.set(dead, await mint(dead));
  tokens.set(slow, await mint(slow));
});

afterAll(async () => {
  await dead?.close();
  await slow?.close();
  slowApi?.closeAllConnections();
  await new Promise((resolve) => slowApi?.close(resolve));
});

describe('a large request body towards an API that is down', () => {
  for (const chunked of [false, true]) {
    it(`when the API refuses connections (${chunked ? 'chunked' : 'Content-Length'}), then every body size gets 503 upstream_unavailable`, async () => {
      for (const size of sizes) {
        expect({ size, ...(await upload(dead, size, chunked)) }).toEqual({
          size,
          status: 503,
          code: 'upstream_unavailable',
        });
      }
    });
  }
});

describe('a large request body towards an API that never answers', () => {
  for (const chunked of [false, true]) {
    it(`when the API is past UPSTREAM_API_TIMEOUT_MS (${chunked ? 'chunked' : 'Content-Length'}), then every body size gets 504 upstream_timeout`, async () => {
      for (const size of [100, maxReplayBytes + 1, 256 * 1024]) {
        expect({ size, ...(await upload(slow, size, chunked)) }).toEqual({
          size,
          status: 504,
          code: 'upstream_timeout',
        });
      }
    });
  }
});
