import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spanAttributes, spanNames } from '../../src/telemetry/spans.js';
import { tracingRequested } from '../../src/telemetry/tracingSwitch.js';
import { startFixedApi } from '../support/apiServers.js';
import { type BrokerProcess, brokerProcessEnv, startBrokerProcess } from '../support/brokerProcess.js';
import { expectNoSecrets, registerSecret } from '../support/logs.js';
import { issueToken, startFakeTokenServer } from '../support/oauthServers.js';
import { attribute, type OtlpReceiver, startOtlpReceiver } from '../support/otlpReceiver.js';
import { waitFor } from '../support/waiting.js';

const origin = 'https://app.example.com';

/** A broker process exporting its spans to `receiver`, against a token endpoint and an API of its own. */
async function startTracedBroker(receiver: OtlpReceiver, env: Record<string, string> = {}) {
  const issued: string[] = [];
  const upstream = await startFakeTokenServer(issueToken(issued));
  const api = await startFixedApi();
  const { env: base, apiKey } = brokerProcessEnv({
    tokenUrl: upstream.tokenUrl,
    clientId: 'tracing-test',
    origin,
  });
  const broker = await startBrokerProcess({
    ...base,
    UPSTREAM_API_URL: api.origin,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'token-broker-test',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    ...env,
  });
  return {
    broker,
    upstream,
    api,
    apiKey,
    issued,
    close: async () => {
      await broker.stop();
      await api.close();
      await upstream.close();
    },
  };
}

type TracedBroker = Awaited<ReturnType<typeof startTracedBroker>>;

/** A page's W3C trace context: a new trace, with the page's own span as the parent. */
function pageContext() {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

async function mint(broker: BrokerProcess, traceparent?: string): Promise<string> {
  const minted = await fetch(`${broker.url}/api/client-token`, {
    method: 'POST',
    headers: { origin, ...(traceparent ? { traceparent } : {}) },
  });
  expect(minted.status).toBe(200);
  return registerSecret('client token', ((await minted.json()) as { token: string }).token);
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
  let receiver: OtlpReceiver;
  let traced: TracedBroker;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    traced = await startTracedBroker(receiver);
  });
  afterAll(async () => {
    await traced?.close();
    await receiver?.close();
  });

  it("when a page's traceparent reaches the proxy on a cold cache, then one trace runs from the page through the broker's spans to the token endpoint and the API", async () => {
    const { broker, upstream, api, apiKey, issued } = traced;
    const minting = pageContext();
    const clientToken = await mint(broker, minting.traceparent);

    const page = pageContext();
    const proxied = await fetch(`${broker.url}/api/proxy/things?x=1`, {
      headers: { origin, authorization: `Bearer ${clientToken}`, traceparent: page.traceparent },
    });
    expect(proxied.status).toBe(200);
    registerSecret('upstream token', issued.at(-1) ?? '');

    const inTrace = (traceId: string) => receiver.spans.filter((span) => span.traceId === traceId);
    const named = (traceId: string, name: string) => inTrace(traceId).filter((span) => span.name === name);
    const childOf = (parent: { spanId: string } | undefined, name: string) =>
      inTrace(page.traceId).find((span) => span.parentSpanId === parent?.spanId && span.name === name);
    await waitFor(
      () => inTrace(page.traceId).length >= 6 && named(minting.traceId, spanNames.mint).length > 0,
      10_000,
    );

    // The page's span → the broker's server span, named after the route.
    const server = inTrace(page.traceId).find((span) => span.parentSpanId === page.spanId);
    expect(server?.name).toBe('GET proxy');
    // The page's query values stay out of the broker's spans (the claim route accepts a key there).
    expect(JSON.stringify(server?.attributes)).not.toContain('x=1');
    // → the proxied call → the token lookup (a miss on a cold cache) → the token request → its HTTP call.
    const call = childOf(server, spanNames.proxy);
    expect(attribute(call, spanAttributes.upstream)).toBe('default');
    expect(attribute(call, spanAttributes.method)).toBe('GET');
    expect(attribute(call, spanAttributes.status)).toBe(200);
    expect(attribute(call, spanAttributes.retried)).toBe(false);
    const lookup = childOf(call, spanNames.tokenLookup);
    expect(attribute(lookup, spanAttributes.cacheResult)).toBe('miss');
    const request = childOf(lookup, spanNames.tokenRequest);
    expect(attribute(request, spanAttributes.grant)).toBe('client_credentials');
    expect(attribute(request, spanAttributes.attempt)).toBe(1);
    expect(attribute(request, spanAttributes.status)).toBe(200);
    const tokenCall = inTrace(page.traceId).find((span) => span.parentSpanId === request?.spanId);
    expect(tokenCall?.kind).toBe(3);
    expect(attribute(tokenCall, 'url.full')).toBe(upstream.tokenUrl);
    expect(upstream.requests.at(-1)?.headers.traceparent).toBe(`00-${page.traceId}-${tokenCall?.spanId}-01`);
    // → the API call, under the proxied call; the API sees the same trace, with that span as its parent.
    const apiCall = inTrace(page.traceId).find(
      (span) => span.parentSpanId === call?.spanId && span.kind === 3,
    );
    expect(attribute(apiCall, 'url.full')).toBe(`${api.origin}/things?x=REDACTED`);
    expect(api.requests.at(-1)?.headers.traceparent).toBe(`00-${page.traceId}-${apiCall?.spanId}-01`);

    // The mint, in the page's other trace, under its server span: origin, upstreams, binding.
    const minted = named(minting.traceId, spanNames.mint)[0];
    const mintServer = inTrace(minting.traceId).find((span) => span.spanId === minted?.parentSpanId);
    expect(mintServer?.name).toBe('POST clientToken');
    expect(attribute(minted, spanAttributes.origin)).toBe(origin);
    expect(attribute(minted, spanAttributes.upstreams)).toEqual(['default']);
    expect(attribute(minted, spanAttributes.binding)).toBe('ip');

    // The request's log lines carry the trace, the access line among them.
    const access = await broker.waitForLine(
      (line) => line.msg === 'request' && line.trace_id === page.traceId,
    );
    expect(access).toMatchObject({ path: '/api/proxy/things', status: 200, span_id: expect.any(String) });
    // Nothing the broker holds secret went out in a span.
    expectNoSecrets(receiver.bodies.join('\n'), [apiKey, clientToken, ...issued], 'exported spans');
  });

  it('when the token is held, then the next call is a cache hit and asks the token endpoint nothing', async () => {
    const { broker, upstream } = traced;
    const clientToken = await mint(broker);
    const before = upstream.requests.length;
    const page = pageContext();
    const proxied = await fetch(`${broker.url}/api/proxy/again`, {
      headers: { origin, authorization: `Bearer ${clientToken}`, traceparent: page.traceparent },
    });
    expect(proxied.status).toBe(200);
    const lookups = () =>
      receiver.spans.filter((span) => span.traceId === page.traceId && span.name === spanNames.tokenLookup);
    await waitFor(() => lookups().length > 0, 10_000);
    expect(attribute(lookups()[0], spanAttributes.cacheResult)).toBe('hit');
    expect(upstream.requests.length).toBe(before);
    expect(
      receiver.spans.some((span) => span.traceId === page.traceId && span.name === spanNames.tokenRequest),
    ).toBe(false);
  });
});

describe('a sampler that leaves requests out', () => {
  it('when a request is not sampled, then none of its spans are exported, yet the API still learns its trace and the decision', async () => {
    const receiver = await startOtlpReceiver();
    // Roots are never sampled, a page's decision is followed; metrics every 100 ms, were any exported.
    const traced = await startTracedBroker(receiver, {
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
      OTEL_METRIC_EXPORT_INTERVAL: '100',
    });
    try {
      const { broker, api } = traced;
      const clientToken = await mint(broker);
      registerSecret('upstream token', traced.issued.at(-1) ?? '');
      const call = async (traceparent?: string) => {
        const proxied = await fetch(`${broker.url}/api/proxy/sampling`, {
          headers: {
            origin,
            authorization: `Bearer ${clientToken}`,
            ...(traceparent ? { traceparent } : {}),
          },
        });
        expect(proxied.status).toBe(200);
        return String(api.requests.at(-1)?.headers.traceparent);
      };

      // A page that did not sample: the API gets the page's trace, under the broker's span, still unsampled.
      const unsampled = pageContext();
      const forwarded = await call(unsampled.traceparent.replace(/-01$/, '-00'));
      expect(forwarded).toMatch(new RegExp(`^00-${unsampled.traceId}-[0-9a-f]{16}-00$`));
      expect(forwarded).not.toContain(unsampled.spanId);
      // No page context: the broker's own root decision (not sampled) goes on to the API.
      const root = await call();
      expect(root).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      // A page that sampled: followed, and exported after the two calls before it.
      const sampled = pageContext();
      await call(sampled.traceparent);
      await waitFor(() => receiver.spans.some((span) => span.traceId === sampled.traceId), 10_000);

      const exported = new Set(receiver.spans.map((span) => span.traceId));
      expect(exported.has(unsampled.traceId)).toBe(false);
      expect(exported.has(root.split('-')[1] ?? '')).toBe(false);
      expect(receiver.spans.some((span) => span.name === spanNames.mint)).toBe(false);
      // The broker's metrics are Prometheus's: the SDK exports none over OTLP unless OTEL_METRICS_EXPORTER asks.
      expect(receiver.paths.filter((path) => path !== '/v1/traces')).toEqual([]);
    } finally {
      await traced.close();
      await receiver.close();
    }
  });
});

describe('spans at shutdown', () => {
  it("when SIGTERM follows a request, then the request's spans are exported before the process exits", async () => {
    const receiver = await startOtlpReceiver();
    // Ten minutes between scheduled exports: only the flush at shutdown can send the spans in time.
    const traced = await startTracedBroker(receiver, { OTEL_BSP_SCHEDULE_DELAY: '600000' });
    try {
      const clientToken = await mint(traced.broker);
      registerSecret('upstream token', traced.issued.at(-1) ?? '');
      const page = pageContext();
      const proxied = await fetch(`${traced.broker.url}/api/proxy/last`, {
        headers: { origin, authorization: `Bearer ${clientToken}`, traceparent: page.traceparent },
      });
      expect(proxied.status).toBe(200);
      await proxied.arrayBuffer();
      expect(receiver.spans.filter((span) => span.traceId === page.traceId)).toEqual([]);

      await traced.broker.stop();
      const names = receiver.spans.filter((span) => span.traceId === page.traceId).map((span) => span.name);
      expect(names).toEqual(expect.arrayContaining(['GET proxy', spanNames.proxy, spanNames.tokenLookup]));
      expect(traced.broker.lines().some((line) => line.msg === 'stopped')).toBe(true);
    } finally {
      await traced.close();
      await receiver.close();
    }
  });
});
