import { createRequire } from 'node:module';
import { context, propagation, type Tracer, trace } from '@opentelemetry/api';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { packageVersion } from '../version.js';
import { redisStatement, scrubSpanUrls } from './spanScrubbing.js';

/** Context headers the instrumentation writes itself. */
const contextHeaders = new Set(['traceparent', 'tracestate']);

/** An undici request as its diagnostics channel hands it over (the fields the hooks below touch). */
interface UndiciRequest {
  headers: unknown;
  addHeader?: (name: string, value: string) => unknown;
}

/**
 * The proxy forwards the page's `traceparent`; with tracing on, the API must see the broker's context
 * instead (the instrumentation's span, or the unsampled server span's): the forwarded copy goes first,
 * or the API would get two.
 */
function dropForwardedContext(request: UndiciRequest): void {
  const { headers } = request;
  if (Array.isArray(headers)) {
    const kept: unknown[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      if (!contextHeaders.has(String(headers[i]).toLowerCase())) kept.push(headers[i], headers[i + 1]);
    }
    request.headers = kept;
  } else if (typeof headers === 'string') {
    request.headers = headers
      .split('\r\n')
      .filter((line) => !contextHeaders.has(line.slice(0, line.indexOf(':')).trim().toLowerCase()))
      .join('\r\n');
  }
}

/**
 * Whether the undici instrumentation leaves an outgoing request alone: yes unless a sampled span is
 * active, since an unsampled call would cost its attributes, span and metrics for nothing exported. The
 * callee must still learn the trace and its decision (W3C Trace Context), so the active context is
 * written here, as the instrumentation would have.
 */
function skipUnsampled(request: UndiciRequest): boolean {
  const active = context.active();
  if (trace.getSpan(active)?.isRecording()) return false;
  const carrier: Record<string, string> = {};
  propagation.inject(active, carrier);
  if (carrier.traceparent === undefined) return true;
  dropForwardedContext(request);
  for (const [name, value] of Object.entries(carrier)) {
    if (typeof request.addHeader === 'function') request.addHeader(name, value);
    else if (Array.isArray(request.headers)) request.headers.push(name, value);
    else if (typeof request.headers === 'string') request.headers += `${name}: ${value}\r\n`;
  }
  return true;
}

/**
 * The OpenTelemetry signals the broker leaves off unless named: its metrics are Prometheus's
 * (`/metrics`) and its logs go to standard output. The SDK's own defaults would export both over OTLP,
 * and record a duration histogram on every outgoing call.
 */
function unnamedSignalsOff(env: NodeJS.ProcessEnv) {
  return {
    ...(env.OTEL_METRICS_EXPORTER?.trim() ? {} : { metricReaders: [] }),
    ...(env.OTEL_LOGS_EXPORTER?.trim() ? {} : { logRecordProcessors: [] }),
  };
}

/** Tracing once started: the broker's tracer, and the SDK's shutdown, which exports what is still buffered. */
export interface Tracing {
  tracer: Tracer;
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry Node SDK, configured by the standard `OTEL_*` variables alone (exporter,
 * endpoint, protocol, service name, sampler, propagators). Loaded only when tracing is asked for
 * (tracingPreload.ts), before the broker's modules, so the instrumentations see them load.
 */
export function startTracing(): Tracing {
  const sdk = new NodeSDK({
    ...unnamedSignalsOff(process.env),
    instrumentations: [
      // Outgoing `node:http` calls only: the broker makes its server spans itself (serverSpans.ts).
      new HttpInstrumentation({ disableIncomingRequestInstrumentation: true }),
      new UndiciInstrumentation({
        ignoreRequestHook: skipUnsampled,
        requestHook: (span, request) => {
          dropForwardedContext(request);
          scrubSpanUrls(span);
        },
      }),
      new IORedisInstrumentation({ dbStatementSerializer: redisStatement }),
    ],
  });
  sdk.start();
  // Node's require hooks, through which the instrumentations patch, never see an ES module's imports.
  // Requiring `http` and `ioredis` once here hands them over; the patches land on the objects the
  // broker's imports share (`http.request`, `Redis.prototype.sendCommand`). undici
  // reports through diagnostics_channel and needs nothing.
  const require = createRequire(import.meta.url);
  require('node:http');
  require('ioredis');
  return { tracer: trace.getTracer('token-broker', packageVersion), shutdown: () => sdk.shutdown() };
}
