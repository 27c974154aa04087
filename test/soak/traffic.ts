import { randomInt } from 'node:crypto';
import { call, origin } from '../chaos/chaosFleet.js';
import { ath, makeProof, type ProofKey, proofKey } from '../support/dpopProofs.js';
import { registerSecret } from '../support/logs.js';
import { sleep } from '../support/waiting.js';
import {
  apiFaultMarker,
  apiPath,
  type ChaosEnvironment,
  publicUrl,
  type ReplicaName,
} from './environment.js';

/**
 * Steady mixed traffic on the fleet, as pages and backends make it (mint, proxy, claim, revoke, DPoP,
 * the sidecar's upstream token), each request sent to a replica in service picked at random, as a load
 * balancer would. Every answer is judged when it arrives: expected, a planned fault's (a 5xx
 * `upstream_unavailable` or `upstream_timeout`, or the failing API's own answer, while a fault is on),
 * or failed: any other 5xx, a 4xx to a valid request, or no answer at all.
 */

/** A time span of the run: a planned fault or a rotation. */
export interface Window {
  kind: string;
  start: number;
  /** Unset while it lasts. */
  end?: number;
  /** Why it could not be carried out, when it could not. */
  error?: string;
}

export type RequestKind =
  | 'mint'
  | 'proxy'
  | 'claim'
  | 'revoke'
  | 'dpop-mint'
  | 'dpop-proxy'
  | 'upstream-token'
  | 'revoked';

/** After a fault ends, its effects may last this long: the token endpoint's recovery is promised in 5 s. */
const faultGraceMs = 7_000;
/** Answers this close after a rotation still count as during it. */
const rotationGraceMs = 2_000;
const plannedCodes = new Set(['upstream_unavailable', 'upstream_timeout']);

export interface Tally {
  /** Requests by status (`error`: no answer). */
  byStatus: Map<string, number>;
  /** Planned-fault answers by `<fault> <status> <code>`. */
  planned: Map<string, number>;
  /** 5xx that no planned fault explains, by `<kind> <status> <code>` (target 0). */
  unplanned5xx: Map<string, number>;
  /** Every failed request, by `<kind> <status> <code>`. */
  failedBy: Map<string, number>;
  failed: number;
  /** Failed requests that overlapped a rotation (target 0). */
  failedDuringRotation: number;
  /** Requests that overlapped a rotation. */
  duringRotation: number;
  /** The first failures in full, for the report. */
  examples: string[];
  /** Revoked tokens whose check on every replica is still to come or still failing. */
  pendingRevocations: PendingRevocation[];
  /** Revocations made, refused late (not at their first check on every replica), and lost. */
  revocations: { made: number; late: number; lost: number };
}

export interface PendingRevocation {
  token: string;
  revokedAt: number;
  /** When a replica first still accepted it. */
  lateSince?: number;
}

/** A revocation reaches every replica at once (pub/sub); this long after it, every replica must refuse it. */
const revocationCheckAfterMs = 2_000;
/** A replica that missed the message resyncs from Redis every 30 s: past this, a revocation is lost. */
const revocationLostAfterMs = 31_000;
const redisFaults = new Set(['redis-kill', 'redis-stall']);

export function createTally(): Tally {
  return {
    byStatus: new Map(),
    planned: new Map(),
    unplanned5xx: new Map(),
    failedBy: new Map(),
    failed: 0,
    failedDuringRotation: 0,
    duringRotation: 0,
    examples: [],
    pendingRevocations: [],
    revocations: { made: 0, late: 0, lost: 0 },
  };
}

const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
const overlapping = (windows: Window[], start: number, end: number, graceMs: number) =>
  windows.filter(
    (window) => window.start <= end && (window.end === undefined || window.end + graceMs >= start),
  );

interface Answer {
  status: number | 'error';
  code?: string;
  body: string;
}

export interface Traffic {
  tally: Tally;
  faults: Window[];
  rotations: Window[];
  /** Runs `users` clients until `stop()`; resolves when they have all finished. */
  run(users: number): Promise<void>;
  stop(): void;
  /** After `stop()`: checks the revocations still pending until none is, or `withinMs` passes (then lost). */
  settleRevocations(withinMs: number): Promise<void>;
}

export function createTraffic(env: ChaosEnvironment): Traffic {
  const tally = createTally();
  const faults: Window[] = [];
  const rotations: Window[] = [];
  let running = false;

  const pick = (): ReplicaName => {
    const names = [...env.inService];
    return names[randomInt(names.length)] as ReplicaName;
  };

  async function send(
    replica: ReplicaName,
    path: string,
    options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
  ): Promise<Answer> {
    // The balancer's choice stands only while the replica is in service (a DPoP proof takes a moment).
    if (!env.inService.has(replica)) replica = pick();
    env.inFlight[replica] += 1;
    try {
      const answer = await call(`${env.replicas[replica].url}${path}`, options);
      let code: unknown;
      try {
        code = answer.json().code;
      } catch {
        // Not JSON: no code.
      }
      return { status: answer.status, code: typeof code === 'string' ? code : undefined, body: answer.text };
    } catch (error) {
      return { status: 'error', body: (error as Error).message };
    } finally {
      env.inFlight[replica] -= 1;
    }
  }

  function judge(kind: RequestKind, start: number, answer: Answer, expectRevoked = false): boolean {
    const end = Date.now();
    const label = `${kind} ${answer.status}${answer.code ? ` ${answer.code}` : ''}`;
    bump(tally.byStatus, String(answer.status));
    const inRotation = overlapping(rotations, start, end, rotationGraceMs).length > 0;
    if (inRotation) tally.duringRotation += 1;
    if (
      expectRevoked
        ? answer.code === 'token_revoked'
        : typeof answer.status === 'number' && answer.status < 300
    )
      return true;
    const during = overlapping(faults, start, end, faultGraceMs).map((window) => window.kind);
    const status = answer.status;
    if (during.length > 0 && typeof status === 'number' && status >= 500) {
      const ours = answer.code !== undefined && plannedCodes.has(answer.code);
      // The failing API's own answer, relayed: only while the API was made to fail.
      const apiFaults = during.filter((kind) => kind.startsWith('api-'));
      const theApis =
        answer.code === undefined && answer.body.includes(apiFaultMarker) && apiFaults.length > 0;
      if (ours || theApis) {
        bump(
          tally.planned,
          `${(theApis ? apiFaults : during).join('+')} ${status} ${answer.code ?? 'relayed'}`,
        );
        return false;
      }
    }
    if (typeof status === 'number' && status >= 500) bump(tally.unplanned5xx, label);
    bump(tally.failedBy, label);
    tally.failed += 1;
    if (inRotation) tally.failedDuringRotation += 1;
    if (tally.examples.length < 20) {
      const during = [
        ...overlapping(faults, start, end, faultGraceMs),
        ...overlapping(rotations, start, end, 0),
      ]
        .map((window) => window.kind)
        .join(', ');
      tally.examples.push(
        `${new Date(start).toISOString()} ${label} (${end - start} ms${during ? `; during ${during}` : ''}): ${answer.body.slice(0, 200)}`,
      );
    }
    return false;
  }

  /** Sends, judges, and returns the answer when it was the expected one. */
  async function exchange(
    kind: RequestKind,
    replica: ReplicaName,
    path: string,
    options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
    expectRevoked = false,
  ): Promise<Answer | undefined> {
    const start = Date.now();
    const answer = await send(replica, path, options);
    return judge(kind, start, answer, expectRevoked) ? answer : undefined;
  }

  /** An API-key request, counted in flight under its key so rotation removes a key no one carries. */
  async function withApiKey<T>(use: (key: string) => Promise<T>): Promise<T> {
    const key = env.apiKey;
    env.apiKeyInFlight.set(key, (env.apiKeyInFlight.get(key) ?? 0) + 1);
    try {
      return await use(key);
    } finally {
      env.apiKeyInFlight.set(key, (env.apiKeyInFlight.get(key) ?? 1) - 1);
    }
  }

  const tokenOf = (answer: Answer | undefined) => {
    if (!answer) return undefined;
    const token = (JSON.parse(answer.body) as { token?: string }).token;
    return token === undefined ? undefined : registerSecret('soak client token', token);
  };

  async function dpopHeaders(
    key: ProofKey,
    method: string,
    path: string,
    token?: string,
  ): Promise<Record<string, string>> {
    const proof = await makeProof(key, {
      htm: method,
      htu: `${publicUrl}${path}`,
      ...(token === undefined ? {} : { ath: ath(token) }),
    });
    return token === undefined
      ? { origin, dpop: proof }
      : { origin, authorization: `DPoP ${token}`, dpop: proof };
  }

  async function proxyOn(replica: ReplicaName, token: string, scheme: 'Bearer' | 'DPoP', key?: ProofKey) {
    const headers =
      scheme === 'DPoP' && key
        ? await dpopHeaders(key, 'GET', apiPath, token)
        : { origin, authorization: `Bearer ${token}` };
    return send(replica, apiPath, { headers });
  }

  const mint = async () =>
    tokenOf(await exchange('mint', pick(), '/api/client-token', { method: 'POST', headers: { origin } }));

  const proxy = (token: string) =>
    exchange('proxy', pick(), apiPath, { headers: { origin, authorization: `Bearer ${token}` } });

  const scenarios: [weight: number, run: (key: ProofKey) => Promise<void>][] = [
    [
      30,
      async () => {
        const token = await mint();
        if (!token) return;
        for (let calls = randomInt(1, 4); calls > 0; calls -= 1) await proxy(token);
      },
    ],
    [
      20,
      async () => {
        const token = tokenOf(
          await withApiKey((apiKey) =>
            exchange('claim', pick(), '/api/auth/claim', {
              method: 'POST',
              headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
              body: JSON.stringify({ origin }),
            }),
          ),
        );
        if (token) await proxy(token);
      },
    ],
    [
      25,
      async (key) => {
        const minted = await exchange('dpop-mint', pick(), '/api/client-token', {
          method: 'POST',
          headers: await dpopHeaders(key, 'POST', '/api/client-token'),
        });
        const token = tokenOf(minted);
        if (!token) return;
        for (let calls = randomInt(1, 4); calls > 0; calls -= 1) {
          const start = Date.now();
          judge('dpop-proxy', start, await proxyOn(pick(), token, 'DPoP', key));
        }
      },
    ],
    [
      15,
      async () => {
        const token = await mint();
        if (!token || !(await proxy(token))) return;
        const where = pick();
        const revoked = await withApiKey((apiKey) =>
          exchange('revoke', where, '/api/client-token/revoke', {
            method: 'POST',
            headers: {
              authorization: `Bearer ${apiKey}`,
              'content-type': 'application/x-www-form-urlencoded',
            },
            body: `token=${token}`,
          }),
        );
        if (!revoked) return;
        tally.revocations.made += 1;
        tally.pendingRevocations.push({ token, revokedAt: Date.now() });
        // The replica that took the revocation refuses the token at once, Redis or not.
        if (!env.inService.has(where)) return;
        await exchange(
          'revoked',
          where,
          apiPath,
          { headers: { origin, authorization: `Bearer ${token}` } },
          true,
        );
      },
    ],
    [
      10,
      async () => {
        await withApiKey((apiKey) =>
          exchange('upstream-token', pick(), '/api/upstream-token', {
            headers: { authorization: `Bearer ${apiKey}` },
          }),
        );
      },
    ],
  ];
  // Each scenario as many times as its weight: a draw from the bag follows the mix.
  const bag = scenarios.flatMap(([weight, run]) => Array.from({ length: weight }, () => run));

  async function user() {
    let key = await proofKey();
    let uses = 0;
    while (running) {
      const scenario = bag[randomInt(bag.length)] as (key: ProofKey) => Promise<void>;
      await scenario(key);
      // A browser keeps its DPoP key for a while, then a new page load makes another.
      uses += 1;
      if (uses % 50 === 0) key = await proofKey();
      // Think time: a modest, steady rate on a 2-core machine.
      await sleep(100 + randomInt(200));
    }
  }

  const everyReplicaRefuses = async (token: string) => {
    const answers = await Promise.all([...env.inService].map((replica) => proxyOn(replica, token, 'Bearer')));
    return answers.every((answer) => answer.code === 'token_revoked');
  };

  /**
   * Every revoked token, once `revocationCheckAfterMs` has passed, must be refused by every replica in
   * service. While Redis is out, and just after, the others cannot have heard yet (documented): no check
   * then. A token still accepted is late; still accepted `revocationLostAfterMs` later, it is lost.
   * These checks are not counted as traffic.
   */
  async function checkRevocations(): Promise<void> {
    const now = Date.now();
    const redisOut = faults.some(
      (window) =>
        redisFaults.has(window.kind) &&
        (window.end === undefined || window.end + revocationCheckAfterMs > now),
    );
    if (redisOut) return;
    const batch = tally.pendingRevocations.splice(0);
    const still: PendingRevocation[] = [];
    for (const pending of batch) {
      if (now - pending.revokedAt < revocationCheckAfterMs || !(await everyReplicaRefuses(pending.token))) {
        if (now - pending.revokedAt >= revocationCheckAfterMs && pending.lateSince === undefined) {
          pending.lateSince = now;
          tally.revocations.late += 1;
        }
        if (pending.lateSince !== undefined && now - pending.lateSince > revocationLostAfterMs) {
          tally.revocations.lost += 1;
          if (tally.examples.length < 20)
            tally.examples.push(
              `${new Date(pending.revokedAt).toISOString()} revocation lost: still accepted`,
            );
          continue;
        }
        still.push(pending);
      }
    }
    tally.pendingRevocations.push(...still);
  }

  async function revocationChecker() {
    while (running) {
      await checkRevocations();
      await sleep(1_000);
    }
  }

  return {
    tally,
    faults,
    rotations,
    async run(users) {
      running = true;
      await Promise.all([revocationChecker(), ...Array.from({ length: users }, user)]);
    },
    stop() {
      running = false;
    },
    async settleRevocations(withinMs) {
      const until = Date.now() + withinMs;
      while (tally.pendingRevocations.length > 0 && Date.now() < until) {
        await checkRevocations();
        if (tally.pendingRevocations.length > 0) await sleep(1_000);
      }
      tally.revocations.lost += tally.pendingRevocations.splice(0).length;
    },
  };
}
