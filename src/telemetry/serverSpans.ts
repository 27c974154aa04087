import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type Attributes,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { RequestListener } from '../http/dispatch/directRoutes.js';
import type { BrokerResponse } from '../http/dispatch/handler.js';
import { redactQuery } from './spanScrubbing.js';

/** RFC 9110 §9 methods plus PATCH; the semantic conventions name any other `_OTHER`. */
const knownMethods = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'OPTIONS',
  'CONNECT',
  'TRACE',
]);

/**
 * The broker's server span, in place of the `http` instrumentation's: one per request, named after the
 * route the listener matched (`GET proxy`), a child of the page's `traceparent` when it sent one.
 *
 * Why the broker's own: the sampler decides once, here, and an unsampled request then costs a span
 * context and not much more. The instrumentation computed a dozen attributes and recorded a duration
 * metric for every request whether sampled or not, and bound the request and the response to the
 * span's context: that gives both objects methods of their own, and every access to them anywhere in
 * Node's `http` and the broker got slower. At a 1 % sampler it took more than 40 % of the proxy's
 * throughput (docs/performance.md, scenario T). Work resumed after a request's body still runs in its
 * context without that (the broker awaits bodies, and Express's parsers resume through promises):
 * test/ops/tracingLeaks.test.ts sends a late body to a parsing route and finds its spans in place.
 */
export function traceRequests(tracer: Tracer, listener: RequestListener): RequestListener {
  return (req, res) => {
    const method = knownMethods.has(req.method ?? '') ? (req.method as string) : '_OTHER';
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer.startSpan(
      method,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'url.scheme': 'http' } },
      parent,
    );
    const active = trace.setSpan(parent, span);
    // An unsampled span records nothing and its `end` does nothing: only its context is passed on.
    const recording = span.isRecording();
    if (recording) {
      span.setAttributes(requestAttributes(req));
      res.once('close', () => endServerSpan(span, res));
    }
    context.with(active, listener, undefined, req, res);
    if (!recording) return;
    // The listener sets the route before anything asynchronous (directRoutes.ts), in both lanes.
    const route = (res as BrokerResponse).locals?.route ?? 'none';
    span.updateName(`${method} ${route}`);
    span.setAttribute('http.route', route);
  };
}

/** What the semantic conventions ask of a server span, less the query's values: the claim route accepts a key there. */
function requestAttributes(req: IncomingMessage): Attributes {
  const target = req.url ?? '/';
  const at = target.indexOf('?');
  const attributes: Attributes = {
    'url.path': at < 0 ? target : target.slice(0, at),
    'network.protocol.version': req.httpVersion,
    'network.peer.address': req.socket.remoteAddress,
    'network.peer.port': req.socket.remotePort,
  };
  if (at >= 0) attributes['url.query'] = redactQuery(target.slice(at + 1));
  const userAgent = req.headers['user-agent'];
  if (userAgent !== undefined) attributes['user_agent.original'] = userAgent;
  return attributes;
}

/** A 5xx is the server's failure; a 4xx is the client's, and leaves the server span's status unset. */
function endServerSpan(span: Span, res: ServerResponse): void {
  span.setAttribute('http.response.status_code', res.statusCode);
  if (res.statusCode >= 500) {
    span.setAttribute('error.type', String(res.statusCode));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}
