/** Types of stats.mjs, for the test that checks its arithmetic. */
export interface Round {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicrosPerRequest?: number;
  loopMicrosPerRequest?: number;
  errors: number;
}
export interface Row {
  name: string;
  rounds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicrosPerRequest: number;
  loopMicrosPerRequest: number;
  errors: number;
}
export interface Target {
  name: string;
  actual: number;
  op: '>=' | '<=' | '<' | '==';
  limit: number;
  passed: boolean;
}
export function median(values: number[]): number;
export function summarise(name: string, rounds: Round[]): Row;
export function ratio(row: { requestsPerSecond: number }, baseline: { requestsPerSecond: number }): number;
export function loopRatio(
  row: { loopMicrosPerRequest: number },
  baseline: { loopMicrosPerRequest: number },
): number;
export function target(name: string, actual: number, op: Target['op'], limit: number): Target;
export function growthPercent(from: number, to: number): number;
export function formatTable(rows: Record<string, unknown>[]): string;
export function formatMarkdownTable(rows: Record<string, unknown>[]): string;
