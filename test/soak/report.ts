import { call } from '../chaos/chaosFleet.js';
import { sample } from '../support/metricsText.js';
import type { ChaosEnvironment, ReplicaName } from './environment.js';
import type { Tally, Window } from './traffic.js';

/**
 * What the soak measures of the replicas (memory and event-loop delay, read from their own `/metrics`)
 * and the report it prints: the figures of docs/fleet.md and whether each target was met.
 */

interface Incarnation {
  replica: ReplicaName;
  pid: number;
  startedAt: number;
  rss: { at: number; bytes: number }[];
  /** Longest event-loop delay seen, seconds (prom-client's monitorEventLoopDelay maximum, reset per scrape). */
  maxLagSeconds: number;
}

export interface Sampler {
  incarnations: Incarnation[];
  /** Scrapes every replica in service once. */
  scrape(): Promise<void>;
  stop(): void;
}

export function startSampler(env: ChaosEnvironment, everyMs = 5_000): Sampler {
  const incarnations: Incarnation[] = [];
  const scrape = async () => {
    await Promise.all(
      [...env.inService].map(async (replica) => {
        const process = env.replicas[replica];
        const pid = process.child.pid as number;
        let incarnation = incarnations.find((known) => known.pid === pid);
        if (!incarnation) {
          incarnation = { replica, pid, startedAt: Date.now(), rss: [], maxLagSeconds: 0 };
          incarnations.push(incarnation);
        }
        const answer = await call(`${process.url}/metrics`).catch(() => undefined);
        if (answer?.status !== 200) return;
        const text = answer.text;
        const bytes = sample(text, 'process_resident_memory_bytes');
        const lag = sample(text, 'nodejs_eventloop_lag_max_seconds');
        if (bytes !== undefined) incarnation.rss.push({ at: Date.now(), bytes });
        if (lag !== undefined) incarnation.maxLagSeconds = Math.max(incarnation.maxLagSeconds, lag);
      }),
    );
  };
  const timer = setInterval(() => void scrape(), everyMs);
  return { incarnations, scrape, stop: () => clearInterval(timer) };
}

export interface MemoryFigure {
  replica: ReplicaName;
  /** Seconds into the run that this incarnation started (0 for the first). */
  startedAtSeconds: number;
  startMb: number;
  middleMb: number;
  endMb: number;
  growthPercent: number;
}

/** The median of the samples taken between `from` and `to`. */
function medianBetween(samples: readonly { at: number; bytes: number }[], from: number, to: number): number {
  const bytes = samples
    .filter(({ at }) => at >= from && at <= to)
    .map((sample) => sample.bytes)
    .sort((one, other) => one - other);
  return bytes[Math.floor(bytes.length / 2)] ?? Number.NaN;
}

/**
 * Start, middle and end RSS of the incarnation of each replica serving at the end, after `warmupMs`
 * (the JIT and the pools settle first). Each is the median of the samples in a window (a minute, or a
 * fifth of the run when shorter) at the start, around the midpoint and at the end: one sample reads
 * wherever the garbage collector happens to be, and the heap's sawtooth alone moves RSS by tens of MB.
 */
export function memoryFigures(sampler: Sampler, runStart: number, warmupMs: number): MemoryFigure[] {
  const last = new Map<ReplicaName, Incarnation>();
  for (const incarnation of sampler.incarnations) last.set(incarnation.replica, incarnation);
  return [...last.values()]
    .sort((one, other) => one.replica.localeCompare(other.replica))
    .flatMap((incarnation) => {
      const warm = incarnation.rss.filter(({ at }) => at - incarnation.startedAt >= warmupMs);
      const first = warm[0];
      const end = warm.at(-1);
      if (!first || !end) return [];
      const window = Math.min(60_000, (end.at - first.at) / 5);
      const midpoint = (first.at + end.at) / 2;
      const startBytes = medianBetween(warm, first.at, first.at + window);
      const middleBytes = medianBetween(warm, midpoint - window / 2, midpoint + window / 2);
      const endBytes = medianBetween(warm, end.at - window, end.at);
      const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
      return [
        {
          replica: incarnation.replica,
          startedAtSeconds: Math.max(0, Math.round((incarnation.startedAt - runStart) / 1000)),
          startMb: mb(startBytes),
          middleMb: mb(middleBytes),
          endMb: mb(endBytes),
          growthPercent: Math.round(((endBytes - startBytes) / startBytes) * 1000) / 10,
        },
      ];
    });
}

export interface SoakFigures {
  durationSeconds: number;
  users: number;
  events: Window[];
  tally: Tally;
  revocations: { made: number; late: number; lost: number };
  memory: MemoryFigure[];
  /** Longest event-loop delay of each incarnation, ms. */
  maxLagMs: { replica: ReplicaName; pid: number; ms: number }[];
  /** Whether the memory target applies (runs of 5 minutes and more). */
  memoryChecked: boolean;
  /** The replicas in service at the end. */
  serving: ReplicaName[];
}

export interface Target {
  name: string;
  value: string;
  met: boolean;
}

export function targets(figures: SoakFigures): Target[] {
  const sum = (map: Map<string, number>) => [...map.values()].reduce((total, count) => total + count, 0);
  const unplanned = sum(figures.tally.unplanned5xx);
  const growth = figures.memory.map((figure) => `${figure.replica} ${figure.growthPercent} %`).join(', ');
  const failedEvents = figures.events.filter((event) => event.error !== undefined);
  return [
    {
      name: 'replicas serving at the end',
      value: figures.serving.join(', '),
      met: figures.serving.length === 2,
    },
    {
      name: 'events that could not be carried out',
      value: failedEvents.map((event) => `${event.kind}: ${event.error}`).join('; ') || '0',
      met: failedEvents.length === 0,
    },
    { name: '5xx not explained by a planned fault', value: String(unplanned), met: unplanned === 0 },
    {
      name: 'failed requests (any unexpected answer)',
      value: String(figures.tally.failed),
      met: figures.tally.failed === 0,
    },
    {
      name: 'failed requests during rotation',
      value: `${figures.tally.failedDuringRotation} of ${figures.tally.duringRotation}`,
      met: figures.tally.failedDuringRotation === 0,
    },
    {
      name: 'revocations lost',
      value: `${figures.revocations.lost} of ${figures.revocations.made}`,
      met: figures.revocations.lost === 0,
    },
    {
      name: `RSS growth, start to end${figures.memoryChecked ? '' : ' (not checked under 5 minutes)'}`,
      value: growth || 'no samples',
      met:
        !figures.memoryChecked ||
        (figures.memory.length === 2 && figures.memory.every((figure) => figure.growthPercent < 10)),
    },
  ];
}

const sorted = (map: Map<string, number>) =>
  [...map.entries()].sort(([one], [other]) => one.localeCompare(other));

/** The report as Markdown, ready for docs/fleet.md. */
export function formatReport(figures: SoakFigures): string {
  const { tally } = figures;
  const total = [...tally.byStatus.values()].reduce((sum, count) => sum + count, 0);
  const eventCounts = new Map<string, number>();
  for (const event of figures.events) eventCounts.set(event.kind, (eventCounts.get(event.kind) ?? 0) + 1);
  const lines = [
    `Chaos soak: ${figures.durationSeconds} s, ${figures.users} clients, ${total} requests, ${figures.events.length} events`,
    '',
    `Events: ${sorted(eventCounts)
      .map(([kind, count]) => `${kind} ×${count}`)
      .join(', ')}`,
    '',
    '| target | figure | met |',
    '| --- | --- | --- |',
    ...targets(figures).map(
      (target) => `| ${target.name} | ${target.value} | ${target.met ? 'yes' : '**no**'} |`,
    ),
    '',
    `Requests by status: ${sorted(tally.byStatus)
      .map(([status, count]) => `${status}: ${count}`)
      .join(', ')}`,
    '',
    `Planned-fault answers: ${
      sorted(tally.planned)
        .map(([what, count]) => `${what}: ${count}`)
        .join(', ') || 'none'
    }`,
    '',
    `Failed requests: ${
      sorted(tally.failedBy)
        .map(([what, count]) => `${what}: ${count}`)
        .join(', ') || 'none'
    }`,
    '',
    `Revocations: ${figures.revocations.made} made, each checked on every replica 2 s later (after Redis was back, if it was out); still accepted at that check: ${figures.revocations.late}; still accepted 31 s later (lost): ${figures.revocations.lost}`,
    '',
    '| replica | started at | RSS start | middle | end | growth |',
    '| --- | --- | --- | --- | --- | --- |',
    ...figures.memory.map(
      (figure) =>
        `| ${figure.replica} | ${figure.startedAtSeconds} s | ${figure.startMb} MB | ${figure.middleMb} MB | ${figure.endMb} MB | ${figure.growthPercent} % |`,
    ),
    '',
    `Longest event-loop delay: ${figures.maxLagMs.map(({ replica, pid, ms }) => `${replica} (pid ${pid}) ${ms} ms`).join(', ')}`,
  ];
  if (tally.examples.length > 0)
    lines.push('', 'First failures:', ...tally.examples.map((example) => `- ${example}`));
  return lines.join('\n');
}
