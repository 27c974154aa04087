import { trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths pino censors wherever they appear in a log object. Request logging never copies bodies or
 * raw headers (see http/middleware/requestContext.ts); this list is the second line of defence.
 */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-client-token"]',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.authorization',
  '*.cookie',
  '*.password',
  '*.secret',
  '*.clientSecret',
  '*.client_secret',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.token',
  '*.apiKey',
  'authorization',
  'clientSecret',
  'accessToken',
  'refreshToken',
  'token',
  'apiKey',
];

/**
 * Standard output, asynchronous and batched: lines are written once 4 KiB have gathered, or every
 * 100 ms, rather than one `write(2)` per line, which cost a measurable share of each proxied request.
 * pino flushes the buffer on exit, and shutdown waits for `logger.flush()`.
 */
const defaultDestination = () => pino.destination({ sync: false, minLength: 4096, periodicFlush: 100 });

/**
 * pino's error serializer, less the `command` ioredis hangs on a failed command's error: for HELLO and
 * AUTH its arguments are the Redis username and password, and for others they are stored values.
 */
function errorWithoutCommand(error: Error): Record<string, unknown> {
  const { command: _command, ...rest } = pino.stdSerializers.err(error) as Record<string, unknown>;
  return rest;
}

/** The active span's ids, so a traced request's lines can be found from its trace. */
function traceIds(): Record<string, string> {
  const context = trace.getActiveSpan()?.spanContext();
  return context ? { trace_id: context.traceId, span_id: context.spanId } : {};
}

export function createLogger(
  /** `traceIds`: with tracing on, every line written inside a span carries `trace_id` and `span_id`. */
  options: { level: string; name?: string; traceIds?: boolean },
  destination: DestinationStream = defaultDestination(),
): Logger {
  return pino(
    {
      name: options.name ?? 'token-broker',
      level: options.level,
      redact: { paths: redactPaths, censor: '[redacted]' },
      serializers: { err: errorWithoutCommand },
      ...(options.traceIds ? { mixin: traceIds } : {}),
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
