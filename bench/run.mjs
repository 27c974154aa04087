/**
 * `npm run bench`: builds the broker, starts real processes on 127.0.0.1, drives them with autocannon
 * and compares each scenario with its baseline measured in the same run (rounds alternate, so drift of
 * the machine hits both sides alike). Prints a table and PASS/FAIL per target, writes
 * bench/results.json, and exits non-zero when a target is missed.
 *
 * Scenarios: m (mint vs bare Express, and vs the limit L-mint: a bare `node:http` server answering the same
 * JSON), p (proxy vs a hand-written Express + http-proxy-middleware proxy, and vs the limit L-proxy: a bare
 * `node:http` server forwarding through one keep-alive undici `Pool`), b (the proxy with call budgets and quotas on, in memory and with Redis), a (the proxy with an
 * allow-list of 50 rules), f (the mint route with pow attestation on), t (the proxy with tracing at 1 % and 100 %), g (the proxy with 100,000 client
 * tokens, 100,000 revoked, 20 upstreams), x (only with BENCH_COMPARE: this build against another
 * checkout's, mint and proxy), d (cold-cache callers), e (soak of the mint route), s (soak of the proxy),
 * w (WebSockets: 1,000 sockets held through the proxy, and echo messages per second through it vs
 * direct to the same API).
 *
 * Settings (environment): BENCH_ROUNDS (3), BENCH_DURATION (5 s per round), BENCH_ROUND_REQUESTS (rounds of
 * this many requests instead of BENCH_DURATION), BENCH_CONNECTIONS (32),
 * BENCH_SOAK_REQUESTS (200,000 per soak; `npm run bench:soak` runs 1,000,000), BENCH_WS_HOLD (30 s
 * that scenario W holds its sockets), BENCH_ONLY (a comma list of m,p,b,a,f,t,g,c,d,e,s,w; all by default),
 * BENCH_COMPARE (a checkout with a built dist/ to compare this build with, scenario x),
 * BENCH_REDIS_URL (redis://127.0.0.1:6379, for scenario b), BENCH_SKIP_BUILD=1, BENCH_CPU_PROF=1 (writes broker CPU profiles
 * to bench/profiles/; see bench/profile-top.mjs).
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { measure, soak } from './lib/load.mjs';
import { rssBytes, startBroker, startScript, stop } from './lib/processes.mjs';
import { closeSockets, echoRate, openSockets } from './lib/sockets.mjs';
import {
  formatMarkdownTable,
  formatTable,
  growthPercent,
  loopRatio,
  median,
  ratio,
  summarise,
  target,
} from './lib/stats.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const benchDir = fileURLToPath(new URL('.', import.meta.url));
const mainPath = `${root}dist/main.js`;

const settings = {
  rounds: positiveInt('BENCH_ROUNDS', 3),
  durationSeconds: positiveInt('BENCH_DURATION', 5),
  // On a loaded machine a round of a few seconds holds too few requests for procfs's 10 ms CPU ticks.
  roundRequests: process.env.BENCH_ROUND_REQUESTS ? positiveInt('BENCH_ROUND_REQUESTS', 1) : undefined,
  connections: positiveInt('BENCH_CONNECTIONS', 32),
  soakRequests: positiveInt('BENCH_SOAK_REQUESTS', 200_000),
  socketHoldSeconds: positiveInt('BENCH_WS_HOLD', 30),
  cpuProfile: process.env.BENCH_CPU_PROF === '1',
  redisUrl: process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379',
  only: new Set((process.env.BENCH_ONLY ?? 'm,p,b,a,f,t,g,c,d,e,s,w').split(',').map((name) => name.trim())),
};
const origin = 'http://app.bench.test';
const apiKey = `bench-${randomBytes(24).toString('base64url')}`;
const children = [];

function positiveInt(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`${name} must be a positive integer`);
  return parsed;
}

function log(message) {
  process.stderr.write(`${message}\n`);
}

function build() {
  if (process.env.BENCH_SKIP_BUILD === '1') return;
  log('building dist/ ...');
  const tsc = spawnSync(
    process.execPath,
    [`${root}node_modules/typescript/bin/tsc`, '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  // tsc emits despite type errors; a tree mid-edit can still be measured, but say so.
  if (tsc.status !== 0) log('warning: tsc reported errors; measuring what it emitted');
  if (!existsSync(mainPath)) throw new Error('dist/main.js is missing after the build');
}

/** A one-key private JWK Set for each algorithm the broker signs with. */
async function signingKeySet(alg) {
  if (alg === 'HS256') {
    const jwk = { kty: 'oct', k: randomBytes(32).toString('base64url') };
    return { keys: [{ ...jwk, kid: await calculateJwkThumbprint(jwk), alg }] };
  }
  const { privateKey } = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}),
  });
  const jwk = await exportJWK(privateKey);
  return { keys: [{ ...jwk, alg, use: 'sig' }] };
}

const profileArgs = (name) => [
  '--cpu-prof',
  `--cpu-prof-dir=${benchDir}profiles`,
  `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`,
];

async function launchBroker(alg, upstream, extraEnv = {}, main = mainPath) {
  if (settings.cpuProfile) await mkdir(`${benchDir}profiles`, { recursive: true });
  const broker = await startBroker(
    main,
    {
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      ALLOWED_ORIGINS: origin,
      CLIENT_TOKEN_TTL: '3600',
      // Every bench request comes from 127.0.0.1: a limit that never trips keeps the limiter's cost in the
      // measure without refusing the load.
      RATE_LIMIT_CLIENT_TOKEN: '999999999/second',
      RATE_LIMIT_PROXY: '999999999/second',
      // Scenario D opens 1,000 connections from that one address at once; the cap stays in place.
      MAX_CONNECTIONS_PER_IP: '2000',
      SIGNING_KEYS: JSON.stringify(await signingKeySet(alg)),
      BROKER_API_KEYS: apiKey,
      UPSTREAM_TOKEN_URL: `${upstream.url}/oauth/token`,
      UPSTREAM_CLIENT_ID: 'bench-client',
      UPSTREAM_CLIENT_SECRET: randomBytes(24).toString('base64url'),
      UPSTREAM_API_URL: `${upstream.url}/api`,
      ...extraEnv,
    },
    {
      nodeArgs: settings.cpuProfile ? profileArgs(`broker-${alg}`) : [],
    },
  );
  children.push(broker.child);
  return broker;
}

async function launchScript(name, env) {
  // With BENCH_CPU_PROF, baselines are profiled too, so their costs can be compared line by line.
  if (settings.cpuProfile) await mkdir(`${benchDir}profiles`, { recursive: true });
  const server = await startScript(`${benchDir}servers/${name}.mjs`, env, {
    nodeArgs: settings.cpuProfile ? profileArgs(name) : [],
  });
  children.push(server.child);
  return server;
}

/** Runs every case once per round, in the same order each round, and returns the rows. */
async function alternate(cases) {
  for (const item of cases) await measure({ ...item.load, durationSeconds: 1 });
  const rounds = new Map(cases.map((item) => [item.name, []]));
  const length = settings.roundRequests
    ? { amount: settings.roundRequests }
    : { durationSeconds: settings.durationSeconds };
  for (let round = 1; round <= settings.rounds; round += 1) {
    for (const item of cases) {
      const result = await measure({ ...item.load, ...length });
      rounds.get(item.name).push(result);
      log(
        `  round ${round} ${item.name}: ${Math.round(result.requestsPerSecond)} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, CPU ${result.cpuMicrosPerRequest} µs/req (loop ${result.loopMicrosPerRequest}), errors ${result.errors}`,
      );
    }
  }
  return cases.map((item) => summarise(item.name, rounds.get(item.name)));
}

const loadDefaults = () => ({ connections: settings.connections });
const clientTokenLoad = ({ url, child }) => ({
  ...loadDefaults(),
  pid: child.pid,
  url: `${url}/api/client-token`,
  method: 'POST',
  headers: { origin },
});

async function post(url, headers) {
  const response = await fetch(url, { method: 'POST', headers });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.text();
}

async function scenarioM(upstream) {
  log('M: bare Express vs POST /api/client-token (EdDSA, ES256, HS256)');
  const brokers = {};
  for (const alg of ['EdDSA', 'ES256', 'HS256']) brokers[alg] = await launchBroker(alg, upstream);
  try {
    // The baseline answers a body of the same size as a real EdDSA answer.
    const sample = await post(`${brokers.EdDSA.url}/api/client-token`, { origin });
    const baseline = await launchScript('baseline', { BENCH_BODY: sample });
    const limit = await launchScript('bareMint', { BENCH_BODY: sample });
    const rows = await alternate([
      { name: 'M  bare Express, fixed JSON', load: clientTokenLoad(baseline) },
      { name: 'L-mint bare node:http, fixed JSON', load: clientTokenLoad(limit) },
      ...Object.entries(brokers).map(([alg, broker]) => ({
        name: `M  client-token ${alg}`,
        load: clientTokenLoad(broker),
      })),
    ]);
    await stop(baseline.child);
    await stop(limit.child);
    const [bare, bareNode, ...minted] = rows;
    for (const row of rows) {
      row.ratio = ratio(row, bare);
      row.loopRatio = loopRatio(row, bare);
      row.limitRatio = ratio(row, bareNode);
    }
    const eddsa = minted.find((row) => row.name.endsWith('EdDSA'));
    return {
      rows,
      bodyBytes: Buffer.byteLength(sample),
      targets: [
        target('M client-token(EdDSA)/bare Express req/s', eddsa.ratio, '>=', 0.8),
        target('L-mint client-token(EdDSA)/bare node:http req/s', eddsa.limitRatio, '>=', 0.3),
        target('M errors', errorCount(rows), '==', 0),
      ],
    };
  } finally {
    for (const broker of Object.values(brokers)) await stop(broker.child);
  }
}

/** A GET that must answer 200; returns the body. */
async function getOk(url, headers) {
  const response = await fetch(url, { headers });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}: ${text}`);
  return text;
}

async function scenarioP(upstream) {
  log('P: /api/proxy vs Express + http-proxy-middleware (keep-alive agent, fixed token)');
  const broker = await launchBroker('EdDSA', upstream);
  const apiEnv = { BENCH_API_URL: `${upstream.url}/api`, BENCH_ACCESS_TOKEN: upstream.accessToken };
  const baseline = await launchScript('proxyBaseline', apiEnv);
  const limit = await launchScript('bareProxy', apiEnv);
  try {
    const { token } = JSON.parse(await post(`${broker.url}/api/client-token`, { origin }));
    const proxyHeaders = { origin, authorization: `Bearer ${token}` };
    // Both sides must answer the same thing, or the comparison means nothing.
    const viaBroker = await getOk(`${broker.url}/api/proxy/items`, proxyHeaders);
    for (const other of [baseline, limit]) {
      if (viaBroker !== (await getOk(`${other.url}/api/proxy/items`, { origin })))
        throw new Error('the broker and a baseline proxy answered differently');
    }
    const handWritten = {
      url: `${baseline.url}/api/proxy/items`,
      headers: { origin },
      pid: baseline.child.pid,
    };
    const bareProxy = { url: `${limit.url}/api/proxy/items`, headers: { origin }, pid: limit.child.pid };
    const proxied = { url: `${broker.url}/api/proxy/items`, headers: proxyHeaders, pid: broker.child.pid };
    // Information only: what the API costs on its own.
    const direct = {
      url: `${upstream.url}/api/items`,
      headers: { authorization: `Bearer ${upstream.accessToken}` },
      pid: upstream.child.pid,
    };
    const loaded = await alternate([
      { name: 'P  hand-written proxy', load: { ...loadDefaults(), ...handWritten } },
      { name: 'L-proxy bare node:http + undici Pool', load: { ...loadDefaults(), ...bareProxy } },
      { name: 'P  /api/proxy', load: { ...loadDefaults(), ...proxied } },
      { name: 'P  API direct (info)', load: { ...loadDefaults(), ...direct } },
    ]);
    // Added latency is measured with one caller at a time: under saturation p50 is queueing time,
    // which the throughput ratio already tells.
    const single = await alternate([
      { name: 'P1 hand-written proxy, 1 caller', load: { connections: 1, ...handWritten } },
      { name: 'P1 /api/proxy, 1 caller', load: { connections: 1, ...proxied } },
    ]);
    for (const pair of [loaded, single]) {
      for (const row of pair) {
        row.ratio = ratio(row, pair[0]);
        row.loopRatio = loopRatio(row, pair[0]);
      }
    }
    const [, bareRow, proxyRow] = loaded;
    for (const row of loaded) row.limitRatio = ratio(row, bareRow);
    const addedMs = Math.round((single[1].p50Ms - single[0].p50Ms) * 100) / 100;
    const measured = [...loaded.slice(0, 3), ...single];
    return {
      rows: [...loaded, ...single],
      addedP50Ms: addedMs,
      targets: [
        target('P /api/proxy/hand-written proxy req/s', proxyRow.ratio, '>=', 1),
        target('L-proxy /api/proxy/bare node:http + undici Pool req/s', proxyRow.limitRatio, '>=', 0.7),
        target('P p50 added (ms, 1 caller)', addedMs, '<=', 0.5),
        target('P errors', errorCount(measured), '==', 0),
      ],
    };
  } finally {
    await stop(broker.child);
    await stop(baseline.child);
    await stop(limit.child);
  }
}

/** Whether Redis answers PING within a second. */
async function redisAnswers(url) {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0 });
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * `GET /api/proxy/items` (or `path`) on each broker with a client token of its own, rounds alternating;
 * each row's ratio is against the first broker's. A broker's `setupRequest` may change each request
 * (another token, another upstream) before it is sent.
 */
async function proxyRatios(brokers) {
  const cases = [];
  for (const { name, broker, path = '/api/proxy/items', setupRequest } of brokers) {
    const { token } = JSON.parse(await post(`${broker.url}/api/client-token`, { origin }));
    const headers = { origin, authorization: `Bearer ${token}` };
    await getOk(`${broker.url}${path}`, headers);
    cases.push({
      name,
      load: { ...loadDefaults(), url: `${broker.url}${path}`, headers, pid: broker.child.pid, setupRequest },
    });
  }
  const rows = await alternate(cases);
  for (const row of rows) {
    row.ratio = ratio(row, rows[0]);
    row.loopRatio = loopRatio(row, rows[0]);
  }
  return rows;
}

const errorCount = (rows) => rows.reduce((sum, row) => sum + row.errors, 0);

/**
 * The proxy with `CLIENT_TOKEN_MAX_CALLS` and `UPSTREAM_CALL_QUOTA` on (limits the load never reaches,
 * so every call is counted and none refused), against the same proxy with both off: in memory, and
 * leasing from Redis (`CALL_LEASE_SIZE` 100, one round trip per 100 calls of the one bench token).
 */
async function scenarioB(upstream) {
  log('B: /api/proxy with call budgets and quotas on, in memory and with Redis');
  const limits = { CLIENT_TOKEN_MAX_CALLS: '1000000000', UPSTREAM_CALL_QUOTA: '999999999/day' };
  const withRedis = await redisAnswers(settings.redisUrl);
  if (!withRedis) log(`  no Redis at ${settings.redisUrl}: the Redis row is left out`);
  const brokers = [
    { name: 'B  /api/proxy, budget and quota off', broker: await launchBroker('EdDSA', upstream) },
    {
      name: 'B  /api/proxy, budget and quota (memory)',
      broker: await launchBroker('EdDSA', upstream, limits),
    },
  ];
  if (withRedis) {
    const broker = await launchBroker('EdDSA', upstream, {
      ...limits,
      REDIS_URL: settings.redisUrl,
      REDIS_KEY_PREFIX: `bench-${randomBytes(6).toString('hex')}:`,
      CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    });
    brokers.push({ name: 'B  /api/proxy, budget and quota (Redis)', broker });
  }
  try {
    const rows = await proxyRatios(brokers);
    return {
      rows,
      targets: [
        target('B budget and quota on (memory)/off req/s', rows[1].ratio, '>=', 0.9),
        target('B errors', errorCount(rows), '==', 0),
      ],
    };
  } finally {
    for (const { broker } of brokers) await stop(broker.child);
  }
}

/**
 * The proxy with an `UPSTREAM_ALLOW` of 50 rules, the one that opens the bench's path last, against the
 * same proxy with none (issue 21: at most 3 % of the proxy's throughput).
 */
async function scenarioA(upstream) {
  log('A: /api/proxy with an allow-list of 50 rules');
  const rules = Array.from({ length: 49 }, (_, i) => `${i % 2 ? 'GET' : 'POST'} /r${i}/*/items/**`);
  const brokers = [
    { name: 'A  /api/proxy, no allow-list', broker: await launchBroker('EdDSA', upstream) },
    {
      name: 'A  /api/proxy, allow-list of 50 rules',
      broker: await launchBroker('EdDSA', upstream, { UPSTREAM_ALLOW: [...rules, 'GET /items'].join(', ') }),
    },
  ];
  try {
    const rows = await proxyRatios(brokers);
    return {
      rows,
      targets: [
        target('A allow-list of 50 rules/none req/s', rows[1].ratio, '>=', 0.97),
        target('A errors', errorCount(rows), '==', 0),
      ],
    };
  } finally {
    for (const { broker } of brokers) await stop(broker.child);
  }
}

/**
 * Attestation (issue 25): the mint route with `CLIENT_TOKEN_ATTESTATION=pow` and an allowance the load
 * never exhausts (`CLIENT_TOKEN_ATTESTATION_AFTER`), so every token passes the gate and counts against
 * the address, against the same route with attestation off. A token minted on a solved challenge costs
 * the broker one verification more (scenario C gives its CPU).
 */
async function scenarioF(upstream) {
  log('F: POST /api/client-token with pow attestation on (within its allowance) vs off');
  const brokers = [
    await launchBroker('EdDSA', upstream),
    await launchBroker('EdDSA', upstream, {
      CLIENT_TOKEN_ATTESTATION: 'pow',
      CLIENT_TOKEN_ATTESTATION_AFTER: '999999999/second',
    }),
  ];
  try {
    const rows = await alternate([
      { name: 'F  client-token EdDSA, attestation off', load: clientTokenLoad(brokers[0]) },
      { name: 'F  client-token EdDSA, pow attestation (allowance)', load: clientTokenLoad(brokers[1]) },
    ]);
    for (const row of rows) {
      row.ratio = ratio(row, rows[0]);
      row.loopRatio = loopRatio(row, rows[0]);
    }
    return { rows, targets: [target('F errors', errorCount(rows), '==', 0)] };
  } finally {
    for (const broker of brokers) await stop(broker.child);
  }
}

/**
 * Tracing (issue 25): the proxy with OpenTelemetry on, exporting over OTLP/HTTP to a collector that
 * discards (bench/servers/otlpSink.mjs), sampling 1 % and 100 % of traces, against the same proxy with
 * tracing off (no OTEL_* set: the SDK is never loaded).
 */
async function scenarioT(upstream) {
  log('T: /api/proxy with tracing off, sampling 1 % and 100 %');
  const sink = await launchScript('otlpSink', {});
  const tracing = (ratio) => ({
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: ratio,
  });
  const brokers = [
    { name: 'T  /api/proxy, tracing off', broker: await launchBroker('EdDSA', upstream) },
    { name: 'T  /api/proxy, tracing 1 %', broker: await launchBroker('EdDSA', upstream, tracing('0.01')) },
    { name: 'T  /api/proxy, tracing 100 %', broker: await launchBroker('EdDSA', upstream, tracing('1')) },
  ];
  try {
    const rows = await proxyRatios(brokers);
    // The batch processor exports every 5 s: by the end of the rounds, spans must have reached the sink.
    const { exports } = await (await fetch(`${sink.url}/stats`)).json();
    log(`  the collector received ${exports} exports`);
    return {
      rows,
      exports,
      targets: [
        // Issue 23: a 1 % sampler costs the proxy at most 10 %.
        target('T tracing 1 %/off req/s', rows[1].ratio, '>=', 0.9),
        target('T trace exports received', exports, '>=', 1),
        target('T errors', errorCount(rows), '==', 0),
      ],
    };
  } finally {
    for (const { broker } of brokers) await stop(broker.child);
    await stop(sink.child);
  }
}

/** Client tokens the bench signs itself, with the claims of `sample` but each its own `jti`. */
function forgeTokens(sample, privateJwk, count) {
  const [encodedHeader, encodedPayload] = sample.split('.');
  const claims = JSON.parse(Buffer.from(encodedPayload, 'base64url').toString());
  const key = createPrivateKey({ key: privateJwk, format: 'jwk' });
  return Array.from({ length: count }, () => {
    const payload = Buffer.from(JSON.stringify({ ...claims, jti: randomBytes(16).toString('base64url') }));
    const input = `${encodedHeader}.${payload.toString('base64url')}`;
    return { token: `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`, ...claims };
  });
}

/** Each request takes the next of `values` in turn, across all connections. */
function rotating(values, apply) {
  let next = 0;
  return (request) => {
    const value = values[next];
    next = (next + 1) % values.length;
    return apply(request, value);
  };
}

/**
 * Cost as the work grows (issue 25), each row against the proxy with one client token in the same run:
 * 100,000 distinct client tokens in turn (ten times what the verified-token cache holds, so every call
 * verifies a signature); 100,000 revoked tokens listed (learnt from Redis at start-up, so it is compared
 * with the same broker on Redis with none revoked); 20 named upstreams, each with its own token cache and
 * connection pool, called in turn.
 */
async function scenarioG(upstream) {
  const many = 100_000;
  const upstreamCount = 20;
  log(
    `G: /api/proxy with ${many.toLocaleString('en')} client tokens, ${many.toLocaleString('en')} revoked, ${upstreamCount} upstreams`,
  );
  const keys = await signingKeySet('EdDSA');
  const named = Array.from({ length: upstreamCount }, (_, i) => `u${i + 1}`);
  // The unprefixed settings the other brokers use are not allowed beside UPSTREAMS: empty is unset.
  const upstreamsEnv = {
    UPSTREAMS: named.join(','),
    UPSTREAM_TOKEN_URL: '',
    UPSTREAM_CLIENT_ID: '',
    UPSTREAM_CLIENT_SECRET: '',
    UPSTREAM_API_URL: '',
  };
  for (const name of named) {
    const prefix = `UPSTREAM_${name.toUpperCase()}_`;
    upstreamsEnv[`${prefix}TOKEN_URL`] = `${upstream.url}/oauth/token`;
    // A client of its own: its own token, so its own cache.
    upstreamsEnv[`${prefix}CLIENT_ID`] = `bench-client-${name}`;
    upstreamsEnv[`${prefix}CLIENT_SECRET`] = randomBytes(24).toString('base64url');
    upstreamsEnv[`${prefix}API_URL`] = `${upstream.url}/api`;
  }
  const brokers = [
    {
      name: 'G  /api/proxy, 1 client token',
      broker: await launchBroker('EdDSA', upstream, { SIGNING_KEYS: JSON.stringify(keys) }),
    },
  ];
  const sample = JSON.parse(await post(`${brokers[0].broker.url}/api/client-token`, { origin })).token;
  log(`  signing ${many.toLocaleString('en')} client tokens ...`);
  const forged = forgeTokens(sample, keys.keys[0], many);
  brokers.push({
    name: `G  /api/proxy, ${many.toLocaleString('en')} client tokens in turn`,
    broker: brokers[0].broker,
    setupRequest: rotating(forged, (request, { token }) => {
      request.headers = { ...request.headers, authorization: `Bearer ${token}` };
      return request;
    }),
  });
  brokers.push({
    name: `G  /api/proxy/<name>, ${upstreamCount} upstreams in turn`,
    broker: await launchBroker('EdDSA', upstream, upstreamsEnv),
    path: `/api/proxy/${named[0]}/items`,
    setupRequest: rotating(named, (request, name) => {
      request.path = `/api/proxy/${name}/items`;
      return request;
    }),
  });
  const withRedis = await redisAnswers(settings.redisUrl);
  if (!withRedis) log(`  no Redis at ${settings.redisUrl}: the revoked rows are left out`);
  if (withRedis) {
    const redisEnv = () => ({
      REDIS_URL: settings.redisUrl,
      REDIS_KEY_PREFIX: `bench-${randomBytes(6).toString('hex')}:`,
      CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    });
    const revokedEnv = redisEnv();
    const redis = new Redis(settings.redisUrl);
    try {
      const key = `${revokedEnv.REDIS_KEY_PREFIX}revocations`;
      for (let start = 0; start < many; start += 10_000) {
        const batch = forged.slice(start, start + 10_000).flatMap(({ exp, jti }) => [exp, jti]);
        await redis.zadd(key, ...batch);
        await redis.expire(key, 7200);
      }
    } finally {
      redis.disconnect();
    }
    brokers.push({
      name: 'G  /api/proxy, none revoked (Redis)',
      broker: await launchBroker('EdDSA', upstream, redisEnv()),
    });
    brokers.push({
      name: `G  /api/proxy, ${many.toLocaleString('en')} revoked (Redis)`,
      broker: await launchBroker('EdDSA', upstream, revokedEnv),
    });
  }
  try {
    // The forged tokens must pass, or the row would measure refusals.
    await getOk(`${brokers[0].broker.url}/api/proxy/items`, {
      origin,
      authorization: `Bearer ${forged[0].token}`,
    });
    const rows = await proxyRatios(brokers);
    const revoked = rows.at(-1);
    const redisBase = rows.at(-2);
    if (withRedis) revoked.revokedRatio = ratio(revoked, redisBase);
    return {
      rows,
      revokedVsNone: withRedis ? revoked.revokedRatio : undefined,
      targets: [target('G errors', errorCount(rows), '==', 0)],
    };
  } finally {
    for (const { broker } of brokers) await stop(broker.child);
  }
}

/**
 * The same build with and without this round's features (issue 25): `BENCH_COMPARE` names another
 * checkout whose `dist/` was built (e.g. commit e34057f, before attestation, budgets, allow-lists, tracing
 * and WebSockets). Its broker and this one run the mint route and the proxy at the same settings, rounds
 * alternating; each ratio is this build's over the other's. Target: within 3 %.
 */
async function scenarioX(upstream) {
  const other = `${process.env.BENCH_COMPARE.replace(/\/$/, '')}/dist/main.js`;
  log(`X: this build vs ${other}, mint and proxy`);
  const brokers = {
    other: await launchBroker('EdDSA', upstream, {}, other),
    self: await launchBroker('EdDSA', upstream),
  };
  try {
    const mint = await alternate([
      { name: 'X  client-token EdDSA, compared build', load: clientTokenLoad(brokers.other) },
      { name: 'X  client-token EdDSA, this build', load: clientTokenLoad(brokers.self) },
    ]);
    for (const row of mint) {
      row.ratio = ratio(row, mint[0]);
      row.loopRatio = loopRatio(row, mint[0]);
    }
    const proxy = await proxyRatios([
      { name: 'X  /api/proxy, compared build', broker: brokers.other },
      { name: 'X  /api/proxy, this build', broker: brokers.self },
    ]);
    const rows = [...mint, ...proxy];
    return {
      rows,
      compared: other,
      targets: [
        target('X mint this/compared build req/s', mint[1].ratio, '>=', 0.97),
        target('X proxy this/compared build req/s', proxy[1].ratio, '>=', 0.97),
        target('X errors', errorCount(rows), '==', 0),
      ],
    };
  } finally {
    for (const broker of Object.values(brokers)) await stop(broker.child);
  }
}

/** One GET on its own connection, so every caller is a separate client waiting at once. */
function getOnNewConnection(url, headers) {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

async function scenarioD() {
  const callers = 1000;
  log(`D: ${callers} concurrent callers of /api/upstream-token on a cold cache`);
  // The token endpoint answers late, so the callers overlap one flight.
  const upstream = await launchScript('upstream', { BENCH_TOKEN_DELAY_MS: '500' });
  const broker = await launchBroker('EdDSA', upstream);
  try {
    const started = performance.now();
    const statuses = await Promise.all(
      Array.from({ length: callers }, () =>
        getOnNewConnection(`${broker.url}/api/upstream-token`, { authorization: `Bearer ${apiKey}` }),
      ),
    );
    const elapsedMs = Math.round(performance.now() - started);
    const { tokenRequests } = await (await fetch(`${upstream.url}/stats`)).json();
    const ok = statuses.filter((status) => status === 200).length;
    log(`  ${ok}/${callers} answered 200 in ${elapsedMs} ms; upstream token requests: ${tokenRequests}`);
    return {
      callers,
      answered200: ok,
      elapsedMs,
      upstreamTokenRequests: tokenRequests,
      targets: [
        target('D upstream token requests', tokenRequests, '==', 1),
        target('D callers answered 200', ok, '==', callers),
      ],
    };
  } finally {
    await stop(broker.child);
    await stop(upstream.child);
  }
}

/** The load of a soak: the mint route, or the proxy with one client token. */
async function soakLoad(kind, broker) {
  if (kind === 'mint') return clientTokenLoad(broker);
  const { token } = JSON.parse(await post(`${broker.url}/api/client-token`, { origin }));
  return {
    ...loadDefaults(),
    url: `${broker.url}/api/proxy/items`,
    headers: { origin, authorization: `Bearer ${token}` },
  };
}

async function scenarioE(upstream, kind) {
  const amount = settings.soakRequests;
  const label = kind === 'mint' ? 'E' : 'S';
  log(
    `${label}: soak of ${amount.toLocaleString('en')} requests on ${kind === 'mint' ? '/api/client-token' : '/api/proxy'}`,
  );
  const broker = await launchBroker('EdDSA', upstream);
  try {
    const pid = broker.child.pid;
    const load = await soakLoad(kind, broker);
    const start = await rssBytes(pid);
    // RSS swings with every garbage collection: it is sampled twice a second, and "middle" and "end" are
    // the medians of the samples taken over 40-60 % and 90-100 % of the requests, not single readings.
    const samples = [];
    let done = 0;
    let nextReport = amount / 10;
    const sampler = setInterval(() => {
      rssBytes(pid).then((rss) => samples.push({ done, rssBytes: rss }));
    }, 500);
    const started = performance.now();
    const result = await soak({
      ...load,
      amount,
      onProgress(count) {
        done = count;
        if (count < nextReport) return;
        nextReport += amount / 10;
        rssBytes(pid).then((rss) => log(`  ${count.toLocaleString('en')} requests, RSS ${mib(rss)} MiB`));
      },
    });
    clearInterval(sampler);
    const seconds = (performance.now() - started) / 1000;
    samples.push({ done: result.total, rssBytes: await rssBytes(pid) });
    const window = (from, to) =>
      median(
        samples
          .filter((sample) => sample.done >= from * amount && sample.done <= to * amount)
          .map((sample) => sample.rssBytes),
      );
    const middle = window(0.4, 0.6);
    const end = window(0.9, 1);
    const growth = growthPercent(middle, end);
    return {
      route: kind,
      requests: result.total,
      errors: result.errors,
      requestsPerSecond: Math.round(result.total / seconds),
      rssMiB: { start: mib(start), middle: mib(middle), end: mib(end) },
      growthMiddleToEndPercent: growth,
      samples,
      targets: [
        target(`${label} soak requests`, result.total, '>=', amount),
        target(`${label} RSS growth middle->end (%)`, growth, '<', 10),
        target(`${label} errors`, result.errors, '==', 0),
      ],
    };
  } finally {
    await stop(broker.child);
  }
}

const mib = (bytes) => Math.round((bytes / 1024 / 1024) * 10) / 10;

async function scenarioW(upstream) {
  const held = 1000;
  log(
    `W: ${held} WebSockets held ${settings.socketHoldSeconds} s through /api/proxy, echo messages/s vs direct`,
  );
  const echo = await launchScript('socketEcho', {});
  const broker = await launchBroker('EdDSA', upstream, {
    UPSTREAM_API_URL: echo.url,
    PROXY_WEBSOCKETS_PER_TOKEN: String(held),
    // Each held socket is a connection from 127.0.0.1, besides the echo rounds' own.
    MAX_CONNECTIONS_PER_IP: String(held + 2 * settings.connections + 100),
  });
  try {
    const { token } = JSON.parse(await post(`${broker.url}/api/client-token`, { origin }));
    const viaBroker = {
      url: `${broker.url.replace('http', 'ws')}/api/proxy/echo`,
      protocols: ['token-broker', `token-broker.bearer.${token}`],
      headers: { origin },
    };
    const direct = { url: `${echo.url.replace('http', 'ws')}/echo`, protocols: [], headers: {} };

    const pid = broker.child.pid;
    const before = await rssBytes(pid);
    const sockets = await openSockets(viaBroker.url, viaBroker.protocols, viaBroker.headers, held);
    let closedEarly = 0;
    for (const socket of sockets) socket.once('close', () => (closedEarly += 1));
    const samples = [];
    const sampler = setInterval(() => rssBytes(pid).then((rss) => samples.push(rss)), 1000);
    await new Promise((resolve) => setTimeout(resolve, settings.socketHoldSeconds * 1000));
    clearInterval(sampler);
    const heldRss = median(samples);
    const stillOpen = held - closedEarly;
    const perSocketKiB = Math.round(((heldRss - before) / held / 1024) * 10) / 10;
    log(
      `  ${stillOpen}/${held} open after ${settings.socketHoldSeconds} s; RSS ${mib(before)} -> ${mib(heldRss)} MiB (${perSocketKiB} KiB per socket)`,
    );
    await closeSockets(sockets);

    // Echo rounds alternate between the two paths, each on its own sockets, so drift hits both alike.
    const pools = {
      direct: await openSockets(direct.url, direct.protocols, direct.headers, settings.connections),
      broker: await openSockets(viaBroker.url, viaBroker.protocols, viaBroker.headers, settings.connections),
    };
    const rates = { direct: [], broker: [] };
    for (const name of ['direct', 'broker']) await echoRate(pools[name], { durationSeconds: 1 });
    for (let round = 1; round <= settings.rounds; round += 1) {
      for (const name of ['direct', 'broker']) {
        const rate = await echoRate(pools[name], { durationSeconds: settings.durationSeconds });
        rates[name].push(rate);
        log(`  round ${round} ${name}: ${Math.round(rate)} echo messages/s`);
      }
    }
    for (const pool of Object.values(pools)) await closeSockets(pool);
    const directRate = Math.round(median(rates.direct));
    const brokerRate = Math.round(median(rates.broker));
    const echoRatio = Math.round((brokerRate / directRate) * 100) / 100;
    return {
      held,
      holdSeconds: settings.socketHoldSeconds,
      stillOpen,
      rssMiB: { before: mib(before), held: mib(heldRss) },
      rssPerSocketKiB: perSocketKiB,
      echoMessagesPerSecond: { direct: directRate, broker: brokerRate },
      echoRatio,
      targets: [
        target(`W sockets open after ${settings.socketHoldSeconds} s`, stillOpen, '==', held),
        target('W echo messages/s broker/direct', echoRatio, '>=', 0.7),
      ],
    };
  } finally {
    await stop(broker.child);
    await stop(echo.child);
  }
}

/**
 * CPU of this process (all its threads: PBKDF2 runs in libuv's pool) per call of `work`, in µs, after as
 * many calls again to warm the JIT: the first few hundred calls cost about twice the steady ones.
 */
async function cpuMicrosPerCall(count, work) {
  for (let i = 0; i < count; i += 1) await work(i);
  const started = process.cpuUsage();
  for (let i = 0; i < count; i += 1) await work(i);
  const { user, system } = process.cpuUsage(started);
  return Math.round((user + system) / count);
}

async function scenarioC() {
  log('C: pow attestation at its defaults: broker CPU per challenge issued and per solution verified');
  const { loadConfig } = await import(`${root}dist/config/index.js`);
  const { createPowProvider } = await import(`${root}dist/attestation/pow.js`);
  const { systemClock } = await import(`${root}dist/clock.js`);
  const { solveChallenge } = await import('altcha-lib');
  const { deriveKey } = await import('altcha-lib/algorithms/pbkdf2');
  const { pow } = loadConfig({ CLIENT_TOKEN_ATTESTATION: 'pow' }).attestation;
  const secret = randomBytes(32);
  const provider = createPowProvider({ settings: pow, secret, clock: systemClock });
  const challengeMicros = await cpuMicrosPerCall(3000, () => provider.challenge(origin));
  // A solution costs the broker one derivation at the default cost whatever the difficulty, so the
  // solutions verified are found at difficulty 1, in a few attempts each.
  const easy = createPowProvider({ settings: { ...pow, difficulty: 1 }, secret, clock: systemClock });
  const proofs = [];
  for (let i = 0; i < 50; i += 1) {
    const challenge = await easy.challenge(origin);
    const solution = await solveChallenge({ challenge, deriveKey });
    proofs.push(Buffer.from(JSON.stringify({ challenge, solution })).toString('base64'));
  }
  const verifyMicros = await cpuMicrosPerCall(3000, async (i) => {
    const outcome = await easy.verify({ proof: proofs[i % proofs.length], origin, ip: '127.0.0.1' });
    if (!('once' in outcome)) throw new Error(`a valid solution was refused: ${outcome.code}`);
  });
  // What a script pays for one token at the default difficulty.
  const scriptMillis = Math.round(
    (await cpuMicrosPerCall(10, async () => {
      await solveChallenge({ challenge: await provider.challenge(origin), deriveKey });
    })) / 1000,
  );
  log(
    `  challenge ${challengeMicros} µs, verify ${verifyMicros} µs, a script's solve ${scriptMillis} ms of CPU`,
  );
  return {
    difficulty: pow.difficulty,
    cost: pow.cost,
    challengeMicros,
    verifyMicros,
    scriptMillisPerToken: scriptMillis,
    targets: [
      target('C pow challenge, broker CPU µs', challengeMicros, '<=', 200),
      target('C pow verification, broker CPU µs', verifyMicros, '<=', 200),
    ],
  };
}

async function main() {
  build();
  log(
    `settings: ${settings.rounds} rounds x ${settings.durationSeconds} s, ${settings.connections} connections, node ${process.version}`,
  );
  const upstream = await launchScript('upstream', {});
  const skipped = (reason) => ({ skipped: reason, rows: [], targets: [] });
  const notSelected = skipped('not selected by BENCH_ONLY');
  const m = settings.only.has('m') ? await scenarioM(upstream) : notSelected;
  const p = settings.only.has('p') ? await scenarioP(upstream) : notSelected;
  const b = settings.only.has('b') ? await scenarioB(upstream) : notSelected;
  const a = settings.only.has('a') ? await scenarioA(upstream) : notSelected;
  const f = settings.only.has('f') ? await scenarioF(upstream) : notSelected;
  const t = settings.only.has('t') ? await scenarioT(upstream) : notSelected;
  const g = settings.only.has('g') ? await scenarioG(upstream) : notSelected;
  const x = process.env.BENCH_COMPARE
    ? await scenarioX(upstream)
    : skipped('BENCH_COMPARE names no other checkout to compare with');
  const c = settings.only.has('c') ? await scenarioC() : notSelected;
  const d = settings.only.has('d') ? await scenarioD() : notSelected;
  const e = settings.only.has('e') ? await scenarioE(upstream, 'mint') : notSelected;
  const soakProxy = settings.only.has('s') ? await scenarioE(upstream, 'proxy') : notSelected;
  const w = settings.only.has('w') ? await scenarioW(upstream) : notSelected;
  await stop(upstream.child);

  const rows = [...m.rows, ...p.rows, ...b.rows, ...a.rows, ...f.rows, ...t.rows, ...g.rows, ...x.rows].map(
    (row) => ({
      scenario: row.name,
      'req/s': row.requestsPerSecond,
      'p50 ms': row.p50Ms,
      'p99 ms': row.p99Ms,
      'CPU µs/req': Number.isNaN(row.cpuMicrosPerRequest) ? '' : row.cpuMicrosPerRequest,
      'loop µs/req': Number.isNaN(row.loopMicrosPerRequest) ? '' : row.loopMicrosPerRequest,
      ratio: row.ratio.toFixed(2),
      'loop ratio': Number.isNaN(row.loopRatio) ? '' : row.loopRatio.toFixed(2),
      'vs limit': row.limitRatio === undefined ? '' : row.limitRatio.toFixed(2),
      errors: row.errors,
    }),
  );
  const targets = [
    ...m.targets,
    ...p.targets,
    ...b.targets,
    ...a.targets,
    ...f.targets,
    ...t.targets,
    ...g.targets,
    ...x.targets,
    ...c.targets,
    ...d.targets,
    ...e.targets,
    ...soakProxy.targets,
    ...w.targets,
  ];
  process.stdout.write(`\n${formatTable(rows)}\n`);
  if (m.skipped) process.stdout.write(`M  SKIPPED: ${m.skipped}\n`);
  if (p.skipped) process.stdout.write(`P  SKIPPED: ${p.skipped}\n`);
  if (b.skipped) process.stdout.write(`B  SKIPPED: ${b.skipped}\n`);
  if (a.skipped) process.stdout.write(`A  SKIPPED: ${a.skipped}\n`);
  if (f.skipped) process.stdout.write(`F  SKIPPED: ${f.skipped}\n`);
  if (t.skipped) process.stdout.write(`T  SKIPPED: ${t.skipped}\n`);
  if (g.skipped) process.stdout.write(`G  SKIPPED: ${g.skipped}\n`);
  else if (g.revokedVsNone !== undefined)
    process.stdout.write(`G  100,000 revoked / none revoked, both on Redis: ${g.revokedVsNone}\n`);
  if (x.skipped) process.stdout.write(`X  SKIPPED: ${x.skipped}\n`);
  process.stdout.write(
    c.skipped
      ? `C  SKIPPED: ${c.skipped}\n`
      : `C  pow (difficulty ${c.difficulty}, cost ${c.cost}): broker CPU ${c.challengeMicros} µs per challenge, ${c.verifyMicros} µs per verification; a script spends ${c.scriptMillisPerToken} ms of CPU per token\n`,
  );
  process.stdout.write(
    d.skipped
      ? `D  SKIPPED: ${d.skipped}\n`
      : `D  ${d.callers} concurrent callers, cold cache: ${d.upstreamTokenRequests} upstream token request(s)\n`,
  );
  for (const [label, soaked] of [
    ['E', e],
    ['S', soakProxy],
  ]) {
    process.stdout.write(
      soaked.skipped
        ? `${label}  SKIPPED: ${soaked.skipped}\n`
        : `${label}  ${soaked.route} soak, ${soaked.requests.toLocaleString('en')} requests at ${soaked.requestsPerSecond} req/s: RSS start ${soaked.rssMiB.start} MiB, middle ${soaked.rssMiB.middle} MiB, end ${soaked.rssMiB.end} MiB (${soaked.growthMiddleToEndPercent} % middle->end)\n`,
    );
  }
  process.stdout.write(
    w.skipped
      ? `W  SKIPPED: ${w.skipped}\n`
      : `W  ${w.stillOpen}/${w.held} WebSockets open after ${w.holdSeconds} s, ${w.rssPerSocketKiB} KiB RSS per socket; echo ${w.echoMessagesPerSecond.broker} messages/s through the broker vs ${w.echoMessagesPerSecond.direct} direct (${w.echoRatio})\n`,
  );
  process.stdout.write('\n');
  for (const item of targets) {
    process.stdout.write(
      `${item.passed ? 'PASS' : 'FAIL'}  ${item.name}: ${item.actual} (target ${item.op} ${item.limit})\n`,
    );
  }
  await writeFile(
    `${benchDir}results.json`,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        settings: { ...settings, only: [...settings.only] },
        markdownTable: formatMarkdownTable(rows),
        m,
        p,
        b,
        a,
        f,
        t,
        g,
        x,
        c,
        d,
        e,
        s: soakProxy,
        w,
        targets,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write('\nwrote bench/results.json\n');
  process.exitCode = targets.every((item) => item.passed) ? 0 : 1;
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 2;
  })
  .finally(async () => {
    for (const child of children) await stop(child);
  });
