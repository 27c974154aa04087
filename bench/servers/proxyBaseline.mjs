/**
 * Scenario P's baseline: the proxy a user would write by hand instead of the broker, Express 5 with
 * `http-proxy-middleware` 3 and a keep-alive agent, forwarding `/api/proxy/*` to the same API as the
 * broker. It attaches one fixed upstream token, strips `Cookie` and checks nothing.
 * Prints `{"port":n}` once listening.
 */
import { Agent } from 'node:http';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';

const target = process.env.BENCH_API_URL;
const accessToken = process.env.BENCH_ACCESS_TOKEN;
if (!target || !accessToken) throw new Error('BENCH_API_URL and BENCH_ACCESS_TOKEN are required');

const app = express();
app.use(
  '/api/proxy',
  createProxyMiddleware({
    target,
    changeOrigin: true,
    agent: new Agent({ keepAlive: true }),
    on: {
      proxyReq(proxyReq) {
        proxyReq.setHeader('authorization', `Bearer ${accessToken}`);
        proxyReq.removeHeader('cookie');
      },
    },
  }),
);
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// Exit on SIGTERM through process.exit, so a CPU profile (BENCH_CPU_PROF) is written.
process.once('SIGTERM', () => process.exit(0));
