/**
 * Scenario A's baseline: a bare Express 5 app with default settings whose one route answers the JSON
 * body it was given, so the broker is compared with Express itself doing the least a JSON route can do.
 */
import express from 'express';

const body = JSON.parse(process.env.BENCH_BODY ?? '{}');
const app = express();
app.all('/api/client-token', (_req, res) => {
  res.json(body);
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// Exit on SIGTERM through process.exit, so a CPU profile (BENCH_CPU_PROF) is written.
process.once('SIGTERM', () => process.exit(0));
