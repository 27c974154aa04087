/**
 * Prints the functions that cost the most in a V8 CPU profile (`node --cpu-prof`), e.g. one the bench
 * writes with BENCH_CPU_PROF=1, as a share of the busy (non-idle) time of the event loop's thread:
 * `node bench/profile-top.mjs <file.cpuprofile> [count] [--inclusive]`. Self time by default; with
 * `--inclusive`, time with the function anywhere on the stack (what a middleware costs with its callees).
 */
import { readFile } from 'node:fs/promises';

const args = process.argv.slice(2);
const inclusive = args.includes('--inclusive');
const [file, countArg] = args.filter((arg) => arg !== '--inclusive');
if (!file) {
  console.error('usage: node bench/profile-top.mjs <file.cpuprofile> [count] [--inclusive]');
  process.exit(2);
}
const profile = JSON.parse(await readFile(file, 'utf8'));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

const label = ({ callFrame }) => {
  const where = callFrame.url
    ? `${callFrame.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${callFrame.lineNumber + 1}`
    : '';
  return `${callFrame.functionName || '(anonymous)'} ${where}`;
};

const totals = new Map();
let busy = 0;
for (let index = 0; index < profile.samples.length; index += 1) {
  const leaf = byId.get(profile.samples[index]);
  const micros = profile.timeDeltas[index] ?? 0;
  if (leaf.callFrame.functionName === '(idle)') continue;
  busy += micros;
  const keys = new Set([label(leaf)]);
  if (inclusive) {
    for (let id = parentOf.get(leaf.id); id !== undefined; id = parentOf.get(id))
      keys.add(label(byId.get(id)));
  }
  for (const key of keys) totals.set(key, (totals.get(key) ?? 0) + micros);
}
const top = [...totals].sort((a, b) => b[1] - a[1]).slice(0, Number(countArg ?? 30));
for (const [name, micros] of top) console.log(`${((micros / busy) * 100).toFixed(1).padStart(5)} %  ${name}`);
