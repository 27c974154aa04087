import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tracingRequested } from '../../src/telemetry/tracingSwitch.js';
import { type ApiServer, startFixedApi } from '../support/apiServers.js';
import { type BrokerProcess, startBrokerProcess } from '../support/brokerProcess.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { type FakeTokenServer, issueToken, startFakeTokenServer } from '../support/oauthServers.js';
import { waitFor } from '../support/waiting.js';

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

/** An OTLP/HTTP receiver (JSON encoding): every span of every export request it was sent. */
async function startReceiver(): Promise<{
  url: string;
  spans: ExportedSpan[];
  bodies: string[];
  server: Server;
}> {
  const spans: ExportedSpan[] = [];
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      bodies.push(text);
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
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, bodies, server };
}

describe('tracing switch', () => {
  it('when no OTEL_* variable names an exporter or endpoint, then tracing stays off', () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_SERVICE_NAME: 'broker' })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c' })).toBe(
      false,
    );
    expect(tracingRequested({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c' })).toBe(
      false,
    );
  });
});

describe('traces over OTLP/HTTP from a broker process', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let upstream: FakeTokenServer;
  let api: ApiServer;
  let broker: BrokerProcess;
  const issued: string[] = [];
  const apiKey = registerSecret('broker api key', `bk-${randomBytes(24).toString('base64url')}`);
  const origin = 'https://app.example.com';

  beforeAll(async () => {
    receiver = await startReceiver();
    upstream = await startFakeTokenServer(issueToken(issued));
    api = await startFixedApi();
    broker = await startBrokerProcess({
      LOG_LEVEL: 'debug',
      ALLOWED_ORIGINS: origin,
      BROKER_API_KEYS: apiKey,
      UPSTREAM_TOKEN_URL: upstream.tokenUrl,
      UPSTREAM_CLIENT_ID: 'tracing-test',
      UPSTREAM_CLIENT_SECRET: registerSecret(
        'upstream client secret',
        `cs-${randomBytes(24).toString('base64url')}`,
      ),
      UPSTREAM_API_URL: api.origin,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'token-broker-test',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    await broker.waitForLine((line) => line.msg === 'token-broker listening');
  });
  afterAll(async () => {
    await broker?.stop();
    await api?.close();
    await upstream?.close();
    await new Promise((resolve) => receiver?.server.close(resolve));
  });

  it("when a page's traceparent reaches the proxy on a cold cache, then one trace holds the server span, the token request and the API call", async () => {
    const minted = await fetch(`${broker.url}/api/client-token`, { method: 'POST', headers: { origin } });
    expect(minted.status).toBe(200);
    const clientToken = registerSecret('client token', ((await minted.json()) as { token: string }).token);

    const traceId = randomBytes(16).toString('hex');
    const pageSpanId = randomBytes(8).toString('hex');
    const proxied = await fetch(`${broker.url}/api/proxy/things?x=1`, {
      headers: {
        origin,
        authorization: `Bearer ${clientToken}`,
        traceparent: `00-${traceId}-${pageSpanId}-01`,
      },
    });
    expect(proxied.status).toBe(200);
    registerSecret('upstream token', issued.at(-1) ?? '');

    const inTrace = () => receiver.spans.filter((span) => span.traceId === traceId);
    await waitFor(() => inTrace().length >= 3, 10_000);
    const spans = inTrace();
    const server = spans.find((span) => span.parentSpanId === pageSpanId);
    expect(server?.name).toBe('GET proxy');
    // The page's query string stays out of the broker's own span (the claim route accepts a key there).
    expect(JSON.stringify(server?.attributes)).not.toContain('x=1');
    // Client spans (kind 3) under the server span: the token endpoint, then the API.
    const clients = spans.filter((span) => span.kind === 3);
    const urls = clients.map((span) => span.attributes.find((a) => a.key === 'url.full')?.value.stringValue);
    expect(urls).toEqual(expect.arrayContaining([upstream.tokenUrl, `${api.origin}/things?x=1`]));
    const apiSaw = api.requests.at(-1)?.headers.traceparent;
    expect(apiSaw).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(upstream.requests.at(-1)?.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-`));

    // The request's log lines carry the trace, the access line among them.
    const access = await broker.waitForLine((line) => line.msg === 'request' && line.trace_id === traceId);
    expect(access).toMatchObject({ path: '/api/proxy/things', status: 200, span_id: expect.any(String) });
    // Nothing the broker holds secret went out in a span.
    expectNoSecrets(receiver.bodies.join('\n'), [apiKey, clientToken, ...issued], 'exported spans');
  });
});
