/** Drives a server with autocannon and measures what the table needs. */
import autocannon from 'autocannon';
import { cpuMicros } from './processes.mjs';
import { median } from './stats.mjs';

/**
 * One load run. Latencies are taken from every response as autocannon reports them (fractional
 * milliseconds): its own histogram rounds to whole milliseconds, too coarse for a sub-millisecond target.
 * With `pid`, also the server's CPU time per request (all threads, and the event loop's thread alone),
 * which explains a ratio: throughput is bounded by the event loop's time per request. With
 * `setupRequest(request)`, each request is rewritten before it is sent (autocannon's `requests` option).
 * @returns {Promise<{ requestsPerSecond: number, p50Ms: number, p99Ms: number, cpuMicrosPerRequest: number, loopMicrosPerRequest: number, errors: number, total: number }>}
 */
export async function measure({
  url,
  method = 'GET',
  headers = {},
  connections,
  durationSeconds,
  amount,
  pid,
  setupRequest,
}) {
  const latencies = [];
  const cpuBefore = pid ? await cpuMicros(pid) : undefined;
  const instance = autocannon({
    url,
    method,
    headers,
    connections,
    // Changes each request before it is sent (another token, another path): autocannon calls it every time.
    ...(setupRequest ? { requests: [{ setupRequest }] } : {}),
    ...(amount ? { amount } : { duration: durationSeconds }),
  });
  instance.on('response', (_client, _status, _bytes, responseTime) => {
    latencies.push(responseTime);
  });
  const result = await instance;
  const cpuAfter = pid ? await cpuMicros(pid) : undefined;
  const seconds = (result.finish.getTime() - result.start.getTime()) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requestsPerSecond: result.requests.total / seconds,
    cpuMicrosPerRequest: cpuAfter
      ? Math.round((cpuAfter.all - cpuBefore.all) / result.requests.total)
      : Number.NaN,
    loopMicrosPerRequest: cpuAfter
      ? Math.round((cpuAfter.main - cpuBefore.main) / result.requests.total)
      : Number.NaN,
    p50Ms: round2(percentile(latencies, 0.5)),
    p99Ms: round2(percentile(latencies, 0.99)),
    errors: result.errors + result.timeouts + result.non2xx,
    total: result.requests.total,
  };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted, fraction) {
  if (sorted.length === 0) return Number.NaN;
  if (fraction === 0.5) return median(sorted);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)];
}

const round2 = (value) => Math.round(value * 100) / 100;

/**
 * A long run of `amount` requests that calls `onProgress(done)` as responses arrive, without keeping
 * latencies (a million of them would weigh on the measuring process).
 */
export async function soak({ url, method = 'GET', headers = {}, connections, amount, onProgress }) {
  const instance = autocannon({ url, method, headers, connections, amount });
  let done = 0;
  instance.on('response', () => {
    done += 1;
    onProgress(done);
  });
  const result = await instance;
  return { total: result.requests.total, errors: result.errors + result.timeouts + result.non2xx };
}
