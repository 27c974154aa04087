/**
 * The broker's upstream for the bench, on 127.0.0.1: a token endpoint that counts its requests (and can
 * answer late, so concurrent callers overlap) and a fast protected API for the proxy scenario.
 * Prints `{"port":n}` once listening.
 */
import { createServer } from 'node:http';

const tokenDelayMs = Number(process.env.BENCH_TOKEN_DELAY_MS ?? 0);
const accessToken = `bench-access-${process.pid}`;
const tokenAnswer = JSON.stringify({ access_token: accessToken, token_type: 'Bearer', expires_in: 3600 });
// About the size of a small REST resource.
const apiAnswer = JSON.stringify({
  items: Array.from({ length: 5 }, (_, index) => ({ id: index + 1, name: `item ${index + 1}`, done: false })),
});
let tokenRequests = 0;

const server = createServer((req, res) => {
  if (req.url === '/oauth/token' && req.method === 'POST') {
    tokenRequests += 1;
    req.resume();
    req.on('end', () => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(tokenAnswer);
      }, tokenDelayMs);
    });
    return;
  }
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ tokenRequests }));
    return;
  }
  if (req.url?.startsWith('/api/')) {
    req.resume();
    if (req.headers.authorization !== `Bearer ${accessToken}`) {
      res.writeHead(401, { 'www-authenticate': 'Bearer' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(apiAnswer);
    return;
  }
  res.writeHead(404);
  res.end();
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, accessToken })}\n`);
});
