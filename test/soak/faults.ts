import { randomInt } from 'node:crypto';
import { sleep } from '../support/waiting.js';
import type { ApiMode, ChaosEnvironment } from './environment.js';
import { type RotationKind, rotationKinds, rotations } from './rotations.js';
import type { Traffic, Window } from './traffic.js';

/**
 * The fault script of the soak: at random, one event at a time with quiet gaps between, each from a
 * shuffled deck of every kind, so that every kind comes up once before any comes up twice. Faults are
 * undone before the next event; rotations leave the new secret in place.
 */

const faultKinds = [
  'redis-kill',
  'redis-stall',
  'token-endpoint-fail',
  'api-slow',
  'api-timeout',
  'api-fail',
  'replica-restart',
] as const;
type FaultKind = (typeof faultKinds)[number];
export type EventKind = FaultKind | `rotate ${RotationKind}`;

const between = (lowMs: number, highMs: number) => lowMs + randomInt(highMs - lowMs + 1);

/** The API slow, late or failing for 3–10 s. */
const apiFault = (mode: ApiMode) => async (env: ChaosEnvironment) => {
  env.apiMode = mode;
  await sleep(between(3_000, 10_000));
  env.apiMode = 'ok';
};

const faults: Record<FaultKind, (env: ChaosEnvironment) => Promise<void>> = {
  /** SIGKILL; it comes back empty (no persistence), with the password of the moment. */
  async 'redis-kill'(env) {
    await env.redis.kill();
    await sleep(between(2_000, 8_000));
    await env.redis.start(['--requirepass', env.secrets['redis-password']]);
  },
  /** SIGSTOP: connections open, nothing answers, as a stalled host. */
  async 'redis-stall'(env) {
    env.redis.pause();
    await sleep(between(1_000, 4_000));
    env.redis.resume();
  },
  async 'token-endpoint-fail'(env) {
    env.tokenEndpointMode = 'fail';
    await sleep(between(5_000, 20_000));
    env.tokenEndpointMode = 'ok';
  },
  'api-slow': apiFault('slow'),
  'api-timeout': apiFault('timeout'),
  'api-fail': apiFault('fail'),
  /** A rolling restart of replica b: out of service, SIGTERM (it drains), started again, back in. */
  async 'replica-restart'(env) {
    await env.restart('b');
  },
};

export interface ScriptOptions {
  /** No event starts after this time (ms since the epoch). */
  until: number;
  /**
   * Restarts only before this time, so the replica restarted runs the second half of the run whole and
   * its memory can be compared from start to end.
   */
  restartsUntil: number;
  /** Called after each event, with its window. */
  onEvent?: (window: Window) => void;
}

/** Runs the script until `until`; resolves with the events it ran, each with its error if it failed. */
export async function runFaultScript(
  env: ChaosEnvironment,
  traffic: Traffic,
  options: ScriptOptions,
): Promise<Window[]> {
  const events: Window[] = [];
  let deck: EventKind[] = [];
  for (;;) {
    await sleep(between(3_000, 10_000));
    if (Date.now() >= options.until) return events;
    if (deck.length === 0)
      deck = shuffle([...faultKinds, ...rotationKinds.map((kind) => `rotate ${kind}` as const)]);
    let kind = deck.shift() as EventKind;
    if (kind === 'replica-restart' && Date.now() >= options.restartsUntil) {
      if (deck.length === 0) continue;
      kind = deck.shift() as EventKind;
    }
    const window: Window = { kind, start: Date.now() };
    const rotation = kind.startsWith('rotate ') ? (kind.slice('rotate '.length) as RotationKind) : undefined;
    (rotation ? traffic.rotations : traffic.faults).push(window);
    try {
      await (rotation ? rotations[rotation](env) : faults[kind as FaultKind](env));
    } catch (error) {
      // Reported as a missed target; the run goes on with the next event.
      window.error = (error as Error).message;
    } finally {
      window.end = Date.now();
      events.push(window);
      options.onEvent?.(window);
    }
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let index = items.length - 1; index > 0; index -= 1) {
    const other = randomInt(index + 1);
    [items[index], items[other]] = [items[other] as T, items[index] as T];
  }
  return items;
}
