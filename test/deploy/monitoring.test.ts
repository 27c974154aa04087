import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { appOrigin, type BrokerHandle, startBroker } from '../support/broker.js';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

/** Labels Prometheus adds to every scraped series: the target's, not the broker's. */
const targetLabels = ['instance', 'job'];
const keywords = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
]);

interface Query {
  where: string;
  expr: string;
  /** Labels named where the query's output is shaped, for legends and annotations to use. */
  legendLabels: string[];
}

/** The series a PromQL expression selects (name and matched labels) and the labels it groups by. */
function parseQuery(expr: string) {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\$\{?\w+\}?/g, '')
    .replace(/\[[^\]]*\]/g, '');
  const grouping = [...text.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)].flatMap((match) =>
    (match[1] ?? '')
      .split(',')
      .map((label) => label.trim())
      .filter(Boolean),
  );
  const rest = text.replace(/\b(?:by|without|on|ignoring)\s*\([^)]*\)/g, ' ');
  const selectors: { name: string; labels: string[] }[] = [];
  for (const match of rest.matchAll(/([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?/g)) {
    const [, name = '', matchers, call] = match;
    if (call || keywords.has(name)) continue;
    const labels = [...(matchers ?? '').matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)].map((pair) => pair[1] ?? '');
    selectors.push({ name, labels });
  }
  return { selectors, grouping };
}

function dashboardQueries(): Query[] {
  const dashboard = JSON.parse(read('deploy/monitoring/grafana-dashboard.json')) as {
    panels: { title: string; targets?: { expr: string; legendFormat?: string }[] }[];
  };
  return dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      where: `dashboard "${panel.title}"`,
      expr: target.expr,
      legendLabels: [...(target.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1] ?? ''),
    })),
  );
}

function ruleQueries(): Query[] {
  const rules = parse(read('deploy/monitoring/alerts.yaml')) as {
    groups: { rules: { alert: string; expr: string; annotations?: Record<string, string> }[] }[];
  };
  return rules.groups.flatMap((group) =>
    group.rules.map((rule) => ({
      where: `alert ${rule.alert}`,
      expr: rule.expr,
      legendLabels: Object.values(rule.annotations ?? {}).flatMap((text) =>
        [...text.matchAll(/\$labels\.(\w+)/g)].map((m) => m[1] ?? ''),
      ),
    })),
  );
}

describe('deploy/monitoring: the dashboard and the alert rules', () => {
  let broker: BrokerHandle<'fake', 'fixed'>;
  /** Every series name the broker exports, with the labels its samples carry. */
  const exported = new Map<string, Set<string>>();

  beforeAll(async () => {
    broker = await startBroker({ upstream: 'fake', api: 'fixed', env: { UPSTREAM_TOKEN_QUOTA: '1000/day' } });
    // Real traffic, so that every labelled family has samples: a mint, a refusal, a proxied call.
    const token = await broker.clientToken();
    await broker.request({
      path: '/api/proxy/things',
      headers: { origin: appOrigin, authorization: `Bearer ${token}` },
    });
    await broker.request({
      method: 'POST',
      path: '/api/client-token',
      headers: { origin: 'https://evil.example' },
    });
    const text = (await broker.request({ path: '/metrics' })).body;
    for (const line of text.split('\n')) {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
      if (!match?.[1]) continue;
      const labels = exported.get(match[1]) ?? new Set<string>();
      for (const pair of (match[2] ?? '').matchAll(/(\w+)="/g)) labels.add(pair[1] ?? '');
      exported.set(match[1], labels);
    }
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('when every query of both files is read, then each names a series the broker exports, with labels it has', () => {
    const queries = [...dashboardQueries(), ...ruleQueries()];
    expect(queries.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const { where, expr, legendLabels } of queries) {
      const { selectors, grouping } = parseQuery(expr);
      if (selectors.length === 0) problems.push(`${where}: no series in ${expr}`);
      const available = new Set(targetLabels);
      for (const { name, labels } of selectors) {
        const has = exported.get(name);
        if (!has) {
          problems.push(`${where}: ${name} is not exported`);
          continue;
        }
        for (const label of has) available.add(label);
        for (const label of labels)
          if (!has.has(label)) problems.push(`${where}: ${name} has no label ${label}`);
      }
      for (const label of [...grouping, ...legendLabels]) {
        if (!available.has(label)) problems.push(`${where}: no series of ${expr} has the label ${label}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('when the files are read, then the dashboard and the rules cover what operators asked for', () => {
    const dashboard = dashboardQueries()
      .map((query) => query.expr)
      .join('\n');
    for (const name of [
      'token_broker_client_tokens_total',
      'token_broker_refusals_total',
      'token_broker_proxy_request_duration_seconds_bucket',
      'token_broker_upstream_token_request_duration_seconds_count',
      'token_broker_upstream_breaker_state',
      'token_broker_upstream_token_quota_remaining',
      'token_broker_redis_degraded',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(dashboard, name).toContain(name);
    }
    expect(ruleQueries().map((query) => query.where)).toEqual(
      expect.arrayContaining([
        'alert TokenBrokerTokenEndpointFailing',
        'alert TokenBrokerBreakerOpen',
        'alert TokenBrokerQuotaNearlySpent',
        'alert TokenBrokerProxy5xxRate',
        'alert TokenBrokerRedisDegraded',
      ]),
    );
  });
});
