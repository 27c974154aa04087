/**
 * Pure helpers of the benchmark: medians over rounds, ratios to a baseline, targets, and the printed
 * table. Kept apart from the process and load-generator code so a unit test can check the arithmetic.
 */

/** The median of a non-empty list of numbers (the mean of the two middle values for an even count). */
export function median(values) {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * One row of the table from the rounds of one load run each: the median of each measure, so one
 * round disturbed by the machine does not move the result.
 * @param {string} name
 * @param {{ requestsPerSecond: number, p50Ms: number, p99Ms: number, cpuMicrosPerRequest?: number, loopMicrosPerRequest?: number, errors: number }[]} rounds
 */
export function summarise(name, rounds) {
  return {
    name,
    rounds: rounds.length,
    requestsPerSecond: Math.round(median(rounds.map((round) => round.requestsPerSecond))),
    p50Ms: round2(median(rounds.map((round) => round.p50Ms))),
    p99Ms: round2(median(rounds.map((round) => round.p99Ms))),
    cpuMicrosPerRequest: median(rounds.map((round) => round.cpuMicrosPerRequest ?? Number.NaN)),
    loopMicrosPerRequest: median(rounds.map((round) => round.loopMicrosPerRequest ?? Number.NaN)),
    errors: rounds.reduce((sum, round) => sum + round.errors, 0),
  };
}

/** Throughput of a row relative to its baseline row, rounded to two decimals. */
export function ratio(row, baseline) {
  return Math.round((row.requestsPerSecond / baseline.requestsPerSecond) * 100) / 100;
}

/**
 * The baseline's event-loop time per request over the row's, two decimals: what the throughput ratio
 * would be if the event loop were the only limit. It moves much less than req/s when other processes
 * share the machine, so it is printed beside the ratio as a check on it. NaN without both figures.
 */
export function loopRatio(row, baseline) {
  return Math.round((baseline.loopMicrosPerRequest / row.loopMicrosPerRequest) * 100) / 100;
}

/**
 * A target: `actual` compared with `limit` by `op`. Passes only for a finite actual value.
 * @param {string} name
 * @param {number} actual
 * @param {'>=' | '<=' | '<' | '=='} op
 * @param {number} limit
 */
export function target(name, actual, op, limit) {
  const passed =
    Number.isFinite(actual) &&
    (op === '>='
      ? actual >= limit
      : op === '<='
        ? actual <= limit
        : op === '<'
          ? actual < limit
          : actual === limit);
  return { name, actual, op, limit, passed };
}

/** Growth from `from` to `to` in percent, one decimal. */
export function growthPercent(from, to) {
  return Math.round(((to - from) / from) * 1000) / 10;
}

/** A plain-text table; the first row gives the column order. */
export function formatTable(rows) {
  if (rows.length === 0) return '';
  const columns = Object.keys(rows[0]);
  const cells = [columns, ...rows.map((row) => columns.map((column) => String(row[column] ?? '')))];
  const widths = columns.map((_, index) => Math.max(...cells.map((line) => line[index].length)));
  const render = (line) =>
    line
      .map((cell, index) => cell.padEnd(widths[index]))
      .join('  ')
      .trimEnd();
  return [
    render(cells[0]),
    render(widths.map((width) => '-'.repeat(width))),
    ...cells.slice(1).map(render),
  ].join('\n');
}

/** The same rows as a GitHub-flavoured Markdown table, for docs/performance.md. */
export function formatMarkdownTable(rows) {
  if (rows.length === 0) return '';
  const columns = Object.keys(rows[0]);
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [
    line(columns),
    line(columns.map(() => '---')),
    ...rows.map((row) => line(columns.map((column) => String(row[column] ?? '')))),
  ].join('\n');
}

const round2 = (value) => Math.round(value * 100) / 100;
