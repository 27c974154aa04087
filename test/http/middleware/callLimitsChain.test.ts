import { describe, expect, it } from 'vitest';
import { createOriginPolicy } from '../../../src/caller/origins.js';
import { createCallerReader } from '../../../src/caller/requestCaller.js';
import type { Handler } from '../../../src/http/dispatch/handler.js';
import { proxyRoutes } from '../../../src/http/routes/proxy.js';
import type { ProxyForwarder } from '../../../src/proxy/forward.js';
import type { ClientTokens } from '../../../src/signing/clientTokens.js';
import { createLogger } from '../../../src/telemetry/logger.js';
import type { Upstream, Upstreams } from '../../../src/upstream/registry.js';

const budgetStep: Handler = (_req, _res, next) => next();
const quotaStep: Handler = (_req, _res, next) => next();

/** The proxy chain of one unnamed upstream, built with only what building it reads. */
function chain(extra: { callBudget?: Handler; callQuotas?: ReadonlyMap<string, Handler> }): Handler[] {
  const upstream = { name: 'default', proxy: {} as ProxyForwarder, origins: undefined } as Upstream;
  const upstreams: Upstreams = {
    list: [upstream],
    named: false,
    get: () => upstream,
    reachableFrom: () => ['default'],
    close: async () => {},
  };
  const { mounts } = proxyRoutes({
    upstreams,
    originPolicy: createOriginPolicy(['https://app.example.com']),
    clientTokens: {} as ClientTokens,
    dpop: { verify: async () => {} } as never,
    caller: createCallerReader(false),
    logger: createLogger({ level: 'silent' }),
    config: { publicUrl: undefined },
    ...extra,
  });
  return mounts[0]?.chain ?? [];
}

describe('the proxy chain with call budgets and quotas', () => {
  it('when both are off, then the chain holds no step of theirs; each one on adds exactly its own step before the forwarder', () => {
    const off = chain({});
    const budget = chain({ callBudget: budgetStep });
    const both = chain({ callBudget: budgetStep, callQuotas: new Map([['default', quotaStep]]) });
    const otherQuota = chain({ callQuotas: new Map([['other', quotaStep]]) });
    expect(budget).toHaveLength(off.length + 1);
    expect(otherQuota).toHaveLength(off.length);
    // After the token check, right before the forwarder (the last step): budget, then quota.
    expect(both).toHaveLength(off.length + 2);
    expect(both.slice(-3, -1)).toEqual([budgetStep, quotaStep]);
  });
});
