/**
 * Scenario L-proxy's limit: a bare `node:http` server forwarding `/api/proxy/*` through one keep-alive
 * undici `Pool` to the same API as the broker, with one fixed bearer token and no check at all: no
 * other request header is sent on, and the API's answer goes back with its status and content headers.
 * The most one Node process can proxy. Prints `{"port":n}` once listening.
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const apiUrl = process.env.BENCH_API_URL;
const accessToken = process.env.BENCH_ACCESS_TOKEN;
if (!apiUrl || !accessToken) throw new Error('BENCH_API_URL and BENCH_ACCESS_TOKEN are required');
const api = new URL(apiUrl);
const pool = new Pool(api.origin);
const prefix = '/api/proxy';
const headers = { authorization: `Bearer ${accessToken}` };

const server = createServer(async (req, res) => {
  try {
    const answer = await pool.request({
      path: `${api.pathname}${req.url.slice(prefix.length)}`,
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    });
    const sent = {};
    for (const name of ['content-type', 'content-length', 'transfer-encoding']) {
      if (answer.headers[name] !== undefined) sent[name] = answer.headers[name];
    }
    res.writeHead(answer.statusCode, sent);
    answer.body.pipe(res);
  } catch {
    res.writeHead(502);
    res.end();
  }
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// Exit on SIGTERM through process.exit, so a CPU profile (BENCH_CPU_PROF) is written.
process.once('SIGTERM', () => process.exit(0));
