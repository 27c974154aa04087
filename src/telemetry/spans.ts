import { type Attributes, type Span, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import { BrokerError, UpstreamError } from '../errors.js';

export type { Tracer } from '@opentelemetry/api';

/**
 * The broker's own span names and attribute keys (docs/operations.md lists them): semantic-convention
 * names where one exists, `token_broker.*` otherwise.
 */
export const spanNames = {
  mint: 'token_broker.client_token.mint',
  proxy: 'token_broker.proxy',
  tokenLookup: 'token_broker.upstream_token.get',
  tokenRequest: 'token_broker.upstream_token.request',
  lease: 'token_broker.fleet.lease',
  fencedWrite: 'token_broker.fleet.fenced_write',
  attestation: 'token_broker.attestation.check',
} as const;

export const spanAttributes = {
  errorType: 'error.type',
  method: 'http.request.method',
  status: 'http.response.status_code',
  origin: 'token_broker.client_token.origin',
  upstreams: 'token_broker.client_token.upstreams',
  binding: 'token_broker.client_token.binding',
  upstream: 'token_broker.upstream.name',
  retried: 'token_broker.proxy.retried',
  cacheResult: 'token_broker.upstream_token.cache',
  grant: 'token_broker.upstream_token.grant',
  attempt: 'token_broker.upstream_token.attempt',
  leaseOutcome: 'token_broker.fleet.lease.outcome',
  fence: 'token_broker.fleet.fence',
  fenceAccepted: 'token_broker.fleet.fence.accepted',
  attestationProvider: 'token_broker.attestation.provider',
  attestationOutcome: 'token_broker.attestation.outcome',
  attestationReason: 'token_broker.attestation.reason',
} as const;

/**
 * What went wrong, as a stable code: a BrokerError's `code`, an UpstreamError's OAuth `error`, else the
 * class name. Never the message: an upstream's `error_description` or a library's text is not ours to
 * export.
 */
function errorType(error: unknown): string {
  if (error instanceof BrokerError) return error.code;
  if (error instanceof UpstreamError) return error.error;
  return error instanceof Error ? error.name : 'unknown';
}

/** Marks a span failed by the error's code alone: no status message, no exception event (they carry text). */
function failSpan(span: Span, error: unknown): void {
  span.setAttribute(spanAttributes.errorType, errorType(error));
  span.setStatus({ code: SpanStatusCode.ERROR });
}

/**
 * The active span when it is not sampled. Under it the broker starts no span of its own: a child of an
 * unsampled span is not sampled either (the samplers the SDK names `parentbased_*`, its default), and
 * starting one would cost a span and a context switch for nothing exported (scenario T of the bench).
 */
function unsampledParent(): Span | undefined {
  const parent = trace.getActiveSpan();
  return parent?.isRecording() === false ? parent : undefined;
}

/**
 * Runs `work` inside a new active span, so the spans it causes (undici, ioredis, the broker's own) are
 * its children, and ends the span when `work` settles. Under an unsampled span, `work` runs in its
 * context and gets that span, on which attributes are no-ops. Callers hold a tracer only when tracing
 * is on (main.ts): without one they call `work` directly, and nothing of this runs.
 */
export function inSpan<T>(
  tracer: Tracer,
  name: string,
  attributes: Attributes,
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const unsampled = unsampledParent();
  if (unsampled) return work(unsampled);
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await work(span);
    } catch (error) {
      failSpan(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/** A span that starts and ends at once (a cache hit), unless the active span is unsampled. */
export function instantSpan(tracer: Tracer, name: string, attributes: Attributes): void {
  if (!unsampledParent()) tracer.startSpan(name, { attributes }).end();
}
