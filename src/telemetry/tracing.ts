import { type IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { type Span, type Tracer, trace } from '@opentelemetry/api';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { BrokerResponse } from '../http/dispatch/handler.js';
import { packageVersion } from '../version.js';
import { redisStatement, scrubSpanUrls } from './spanScrubbing.js';

/**
 * Names a server span after its route (`GET proxy`, `POST claim`), never the raw path, and keeps the
 * query's values out of it: the claim route accepts credentials there.
 */
function describeServerSpan(span: Span, request: IncomingMessage, response: BrokerResponse): void {
  // Set by the listener (directRoutes.ts) in both lanes; `none` for a path no route has.
  const route = response.locals?.route ?? 'none';
  span.updateName(`${request.method ?? 'GET'} ${route}`);
  span.setAttribute('http.route', route);
  scrubSpanUrls(span);
}

/** Context headers the instrumentation writes itself. */
const contextHeaders = new Set(['traceparent', 'tracestate']);

/**
 * The proxy forwards the page's `traceparent`; with tracing on, the API must see the broker's span as
 * parent instead, which the undici instrumentation adds after this hook: the forwarded copy goes first,
 * or the API would get two.
 */
function dropForwardedContext(request: { headers: unknown }): void {
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
    instrumentations: [
      new HttpInstrumentation({
        applyCustomAttributesOnSpan: (span, request, response) => {
          if (response instanceof ServerResponse)
            describeServerSpan(span, request as IncomingMessage, response as BrokerResponse);
        },
      }),
      new UndiciInstrumentation({
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
  // Requiring `http` and `ioredis` once here hands them over; the patches land on prototypes
  // (`Server.prototype.emit`, `Redis.prototype.sendCommand`), which the broker's imports share. undici
  // reports through diagnostics_channel and needs nothing.
  const require = createRequire(import.meta.url);
  require('node:http');
  require('ioredis');
  return { tracer: trace.getTracer('token-broker', packageVersion), shutdown: () => sdk.shutdown() };
}
