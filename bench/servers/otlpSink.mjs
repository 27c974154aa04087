/**
 * Scenario T's trace collector: accepts every OTLP/HTTP export (`POST /v1/traces`) and discards it, so
 * tracing is measured with its exporter working and nothing behind it slowing the broker down. Counts
 * the exports, so the bench can tell that spans did arrive. Prints `{"port":n}` once listening.
 */
import { createServer } from 'node:http';

let exports = 0;
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ exports }));
    return;
  }
  req.resume();
  req.on('end', () => {
    exports += 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// Exit on SIGTERM through process.exit, so a CPU profile (BENCH_CPU_PROF) is written.
process.once('SIGTERM', () => process.exit(0));
