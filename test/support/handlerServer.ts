import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';
import type { BrokerResponse, Handler, RequestLocals } from '../../src/http/dispatch/handler.js';
import { sequence } from '../../src/http/dispatch/sequence.js';
import { errorHandler } from '../../src/http/problem.js';
import type { Logger } from '../../src/telemetry/logger.js';

/**
 * Serves `handlers` on a real `node:http` socket on 127.0.0.1, run as the direct lane runs a chain:
 * `sequence`, then the error handler for what the chain passes on. For tests of one middleware on its
 * own; closed when the test ends.
 */
export async function serveHandlers(handlers: Handler[], logger: Logger): Promise<string> {
  const run = sequence(handlers);
  const onError = errorHandler(logger);
  const server = createServer((req, res) => {
    const response = res as BrokerResponse;
    response.locals = Object.create(null) as RequestLocals;
    run(req, response, (error) => onError(error, req, response));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
