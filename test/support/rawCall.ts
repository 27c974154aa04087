import { type IncomingHttpHeaders, request } from 'node:http';

/** An answer to `call()`, body kept as bytes. */
export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json(): Record<string, unknown>;
  /** From sending the request to the answer's last byte. */
  ms: number;
}

/**
 * Sends one request with a raw target (node:http neither normalises `..` nor re-encodes `%2e`, as fetch
 * and supertest's URL handling would) on a fresh connection.
 */
export function call(
  baseUrl: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawAnswer> {
  const started = performance.now();
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({
      host: hostname,
      port,
      path,
      method: options.method ?? 'GET',
      headers: options.headers,
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: () => body.toString('utf8'),
          json: () => JSON.parse(body.toString('utf8')) as Record<string, unknown>,
          ms: performance.now() - started,
        });
      });
    });
    req.end(options.body);
  });
}
