/**
 * Keep-alive policies on a synthetic trace (bench/keepalive-sim.ts): the hybrid histogram policy the pool runs
 * (src/worker/keepalive.ts: fallback 5 minutes, as `thaw serve` by default; and with the paper's fallback, the
 * histogram's whole 4-hour range) against fixed keep-alives of 5 and 10 minutes. Per policy and function class:
 * cold-start rate and idle memory-time (GB·s). Simulated time, so it runs in seconds.
 * Writes bench/results/keepalive.json.
 *   npm run bench:keepalive [-- --seed 42 --hours 24 --per-class 16]
 */
import { parseArgs } from 'node:util';
import { FixedKeepAlive, HistogramKeepAlive, type KeepAlivePolicy } from '../src/worker/keepalive.js';
import { simulate, syntheticTrace, type FunctionClass, type FunctionResult } from './keepalive-sim.js';
import { summarise, writeResults, type Scenario } from './lib.js';

const { values } = parseArgs({ options: { seed: { type: 'string', default: '42' }, hours: { type: 'string', default: '24' }, 'per-class': { type: 'string', default: '16' } } });
const SEED = Number(values.seed);
const HOURS = Number(values.hours);
const PER_CLASS = Number(values['per-class']);
const MIN = 60_000;
const LEAD_MS = 2000;
const INIT_MS = 500;

const policies: { name: string; make: () => KeepAlivePolicy }[] = [
  { name: 'histogram', make: () => new HistogramKeepAlive({ fallbackKeepAliveMs: 5 * MIN }) },
  { name: 'histogram-4h-fallback', make: () => new HistogramKeepAlive({ fallbackKeepAliveMs: 240 * MIN }) },
  { name: 'fixed-5min', make: () => new FixedKeepAlive(5 * MIN) },
  { name: 'fixed-10min', make: () => new FixedKeepAlive(10 * MIN) },
];

const trace = syntheticTrace({ seed: SEED, hours: HOURS, perClass: PER_CLASS });
const classes: (FunctionClass | 'all')[] = ['periodic', 'bursty', 'rare', 'all'];
const scenarios: Scenario[] = [];
const rows: string[][] = [];
const round = (x: number, d: number): number => Math.round(x * 10 ** d) / 10 ** d;

for (const p of policies) {
  const results = simulate(trace, p.make(), { leadMs: LEAD_MS, initMs: INIT_MS, endMs: HOURS * 60 * MIN });
  for (const cls of classes) {
    const rs: FunctionResult[] = results.filter((r) => cls === 'all' || r.cls === cls);
    const invocations = rs.reduce((s, r) => s + r.invocations, 0);
    const coldStarts = rs.reduce((s, r) => s + r.coldStarts, 0);
    const idleGbS = rs.reduce((s, r) => s + r.idleGbS, 0);
    const prewarms = rs.reduce((s, r) => s + r.prewarms, 0);
    const prewarmsUsed = rs.reduce((s, r) => s + r.prewarmsUsed, 0);
    const rules: Record<string, number> = {};
    for (const r of rs) for (const [k, v] of Object.entries(r.rules)) rules[k] = (rules[k] ?? 0) + v;
    const coldStartPct = invocations === 0 ? 0 : (100 * coldStarts) / invocations;
    // Samples: each function's cold-start rate (%); p50/p99 over the functions of the class.
    scenarios.push(summarise(`${p.name}/${cls}`, '%', rs.map((r) => (r.invocations === 0 ? 0 : (100 * r.coldStarts) / r.invocations)), {
      policy: p.name,
      class: cls,
      functions: rs.length,
      invocations,
      coldStarts,
      coldStartPct: round(coldStartPct, 2),
      idleGbS: round(idleGbS, 1),
      idleMbMinPerInvocation: round((idleGbS * 1024) / 60 / Math.max(1, invocations), 2),
      prewarms,
      prewarmsUsed,
      rules,
    }));
    rows.push([p.name, cls, String(invocations), coldStartPct.toFixed(1), String(Math.round(idleGbS)), prewarms === 0 ? '–' : `${prewarmsUsed}/${prewarms}`]);
  }
}

const file = writeResults('keepalive.json', scenarios, {
  trace: { seed: SEED, hours: HOURS, functionsPerClass: PER_CLASS, invocations: trace.reduce((s, f) => s + f.invocations.length, 0), prewarmLeadMs: LEAD_MS, prewarmInitMs: INIT_MS },
  functions: trace.map((f) => ({ name: f.name, class: f.cls, memoryMb: f.memoryMb, invocations: f.invocations.length, shape: f.shape })),
});
const head = ['policy', 'class', 'invocations', 'cold starts %', 'idle GB·s', 'pre-warms used/started'];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
const line = (r: readonly string[]): string => `| ${r.map((c, i) => (i < 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ')} |\n`;
process.stdout.write(`${HOURS} h simulated, ${trace.length} functions (${PER_CLASS} per class), seed ${SEED}\n`);
process.stdout.write(line(head));
process.stdout.write(`|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|\n`);
for (const r of rows) process.stdout.write(line(r));
process.stdout.write(`wrote ${file}\n`);
