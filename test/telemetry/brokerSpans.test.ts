import type { Span, SpanOptions, Tracer } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { UpstreamError } from '../../src/errors.js';
import { spanAttributes, spanNames } from '../../src/telemetry/spans.js';
import { traceTokenClient } from '../../src/telemetry/tokenClientSpans.js';
import { renewAcrossFleet } from '../../src/upstream/fleetRenewal.js';
import { createTokenCache } from '../../src/upstream/tokenCache.js';
import type { TokenClient, UpstreamToken } from '../../src/upstream/types.js';
import { captureLogs } from '../support/logs.js';
import { upstreamConfigFor } from '../support/oauthServers.js';

interface Recorded {
  name: string;
  attributes: Record<string, unknown>;
  ended: boolean;
}

/** A tracer that records each span's name, attributes and end (the SDK's behaviour is not under test). */
function recordingTracer(): { tracer: Tracer; spans: Recorded[] } {
  const spans: Recorded[] = [];
  const start = (name: string, options?: SpanOptions): Span => {
    const recorded: Recorded = { name, attributes: { ...options?.attributes }, ended: false };
    spans.push(recorded);
    const span = {
      setAttribute: (key: string, value: unknown) => {
        recorded.attributes[key] = value;
        return span;
      },
      setStatus: () => span,
      end: () => {
        recorded.ended = true;
      },
    };
    return span as unknown as Span;
  };
  const tracer = {
    startSpan: start,
    startActiveSpan: (name: string, options: SpanOptions, work: (span: Span) => unknown) =>
      work(start(name, options)),
  };
  return { tracer: tracer as unknown as Tracer, spans };
}

const config = upstreamConfigFor(undefined);

function tokenAt(now: number): UpstreamToken {
  return { accessToken: `at-${now}`, tokenType: 'Bearer', obtainedAt: now, expiresAt: now + 3_600_000 };
}

describe("the broker's spans", () => {
  it('when two callers find the cache cold, then one lookup is a miss, the other waited on it, and a later one is a hit', async () => {
    const clock = createManualClock(1_000_000);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const client: TokenClient = {
      clientCredentials: async () => {
        await gate;
        return tokenAt(clock.now());
      },
      refresh: async () => tokenAt(clock.now()),
      tokenEndpoint: async () => 'https://as.example.test/token',
    };
    const { tracer, spans } = recordingTracer();
    const cache = createTokenCache({
      client: traceTokenClient(client, tracer),
      config,
      clock,
      logger: captureLogs().logger,
      tracer,
      schedule: () => () => undefined,
    });

    const first = cache.get();
    const second = cache.get();
    release();
    await Promise.all([first, second]);
    await cache.get();

    const lookups = spans.filter((span) => span.name === spanNames.tokenLookup);
    expect(lookups.map((span) => span.attributes[spanAttributes.cacheResult])).toEqual([
      'miss',
      'waited',
      'hit',
    ]);
    expect(lookups.every((span) => span.ended)).toBe(true);
    const requests = spans.filter((span) => span.name === spanNames.tokenRequest);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.attributes).toMatchObject({
      [spanAttributes.grant]: 'client_credentials',
      [spanAttributes.attempt]: 1,
    });
    expect(JSON.stringify(spans)).not.toContain('at-');
    cache.close();
  });

  it('when token requests fail, then each counts one more attempt until a token is obtained', async () => {
    let failures = 2;
    const client: TokenClient = {
      clientCredentials: async () => {
        if (failures-- > 0) throw new UpstreamError('temporarily_unavailable', { httpStatus: 503 });
        return tokenAt(0);
      },
      refresh: async () => tokenAt(0),
      tokenEndpoint: async () => 'https://as.example.test/token',
    };
    const { tracer, spans } = recordingTracer();
    const traced = traceTokenClient(client, tracer);
    for (let i = 0; i < 2; i += 1) await expect(traced.clientCredentials()).rejects.toThrow(UpstreamError);
    await traced.clientCredentials();
    await traced.refresh('a-refresh-token-value');

    expect(
      spans.map((span) => [span.attributes[spanAttributes.grant], span.attributes[spanAttributes.attempt]]),
    ).toEqual([
      ['client_credentials', 1],
      ['client_credentials', 2],
      ['client_credentials', 3],
      ['refresh_token', 1],
    ]);
    expect(spans[0]?.attributes[spanAttributes.errorType]).toBe('temporarily_unavailable');
    expect(JSON.stringify(spans)).not.toContain('a-refresh-token-value');
  });

  it('when a renewal goes through the fleet lock, then the lease span says how it ended and under which fence', async () => {
    const logger = captureLogs().logger;
    const lease = { fence: 7, lost: () => false, release: async () => undefined };
    const { tracer, spans } = recordingTracer();

    const taken = await renewAcrossFleet({
      lock: { tryAcquire: async () => lease },
      name: 'token',
      reload: async () => undefined,
      fetch: async (fence) => `fetched under ${fence}`,
      logger,
      waitMs: 1_000,
      tracer,
    });
    const other = await renewAcrossFleet({
      lock: { tryAcquire: async () => undefined },
      name: 'token',
      reload: async () => 'stored by another replica',
      fetch: async () => 'never',
      logger,
      waitMs: 1_000,
      sleep: async () => undefined,
      tracer,
    });

    expect([taken.value, other.value]).toEqual(['fetched under 7', 'stored by another replica']);
    expect(spans.map((span) => [span.name, span.attributes])).toEqual([
      [spanNames.lease, { [spanAttributes.leaseOutcome]: 'acquired', [spanAttributes.fence]: 7 }],
      [spanNames.lease, { [spanAttributes.leaseOutcome]: 'stored_by_other' }],
    ]);
  });
});
