import { appendFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { inject } from 'vitest';

/** A span as OTLP/JSON encodes it (the fields the tests read). */
export interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
  events?: { name: string; attributes?: ExportedSpan['attributes'] }[];
  status?: { code?: number; message?: string };
}

export interface OtlpReceiver {
  /** What to give a broker as `OTEL_EXPORTER_OTLP_ENDPOINT` (with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`). */
  url: string;
  /** Every span of every export request received so far. */
  spans: ExportedSpan[];
  /** The raw body of every export request. */
  bodies: string[];
  /** The path of every export request: `/v1/traces`, or another signal's (`/v1/metrics`, `/v1/logs`). */
  paths: string[];
  close(): Promise<void>;
}

/**
 * An OTLP/HTTP receiver (JSON encoding) on 127.0.0.1. Each export request is also appended to the
 * run's `spans.ndjson`, which the global teardown scans for leaked secrets like the logs.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ExportedSpan[] = [];
  const bodies: string[] = [];
  const paths: string[] = [];
  const spanFile = join(inject('leakDir'), 'spans.ndjson');
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      bodies.push(text);
      paths.push(req.url ?? '');
      appendFileSync(spanFile, `${text.replaceAll('\n', ' ')}\n`);
      const body = JSON.parse(text) as {
        resourceSpans?: { scopeSpans?: { spans?: ExportedSpan[] }[] }[];
      };
      for (const resource of body.resourceSpans ?? []) {
        for (const scope of resource.scopeSpans ?? []) spans.push(...(scope.spans ?? []));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    bodies,
    paths,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A span attribute's value, whatever its OTLP type (string, int, bool, array of strings). */
export function attribute(span: ExportedSpan | undefined, key: string): unknown {
  const value = span?.attributes.find((entry) => entry.key === key)?.value;
  if (value === undefined) return undefined;
  if ('stringValue' in value) return value.stringValue;
  if ('intValue' in value) return Number(value.intValue);
  if ('boolValue' in value) return value.boolValue;
  if ('arrayValue' in value) {
    const { values = [] } = value.arrayValue as { values?: { stringValue?: string }[] };
    return values.map((entry) => entry.stringValue);
  }
  return value;
}
