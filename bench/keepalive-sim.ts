/**
 * Trace-driven simulation of keep-alive policies: a synthetic invocation trace (periodic, bursty and rare
 * functions, from a seeded PRNG) replayed against a KeepAlivePolicy from src/worker/keepalive.ts, the same class
 * the pool uses, with the pool's rules (src/worker/keepalive-schedule.ts) for what a decision does:
 *
 * - When an invocation completes, the policy decides. Without a pre-warm time, or with one no further away than
 *   the pre-warm lead, the environment stays loaded until the end of the window; otherwise it is unloaded at once
 *   and a pre-warm starts `leadMs` before the pre-warm time and keeps its environment until the window ends.
 * - An invocation is warm when an environment of its function is loaded and initialised when it arrives. A
 *   pre-warm takes `initMs` to be ready; an invocation arriving before that is cold.
 * - Idle memory-time is counted while an environment is loaded and not running an invocation, pre-warms
 *   included (from their start), in GB·s with each function's memory size.
 *
 * One environment per function: the generator never starts an invocation of a function before the previous one
 * has completed, so concurrency does not blur the comparison.
 */
import type { KeepAlivePolicy } from '../src/worker/keepalive.js';

export type FunctionClass = 'periodic' | 'bursty' | 'rare';

export interface TraceFunction {
  readonly name: string;
  readonly cls: FunctionClass;
  readonly memoryMb: number;
  /** What the generator was asked for, for the report. */
  readonly shape: string;
  /** Invocations: arrival time and run time, ms from the start of the trace, in order, never overlapping. */
  readonly invocations: readonly { readonly at: number; readonly runMs: number }[];
}

/** mulberry32: a small, fast, seeded PRNG, so that every run replays the same trace. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MIN = 60_000;
const HOUR = 60 * MIN;

export interface TraceOptions {
  readonly seed: number;
  readonly hours: number;
  /** Functions per class. */
  readonly perClass: number;
}

/**
 * Periodic: a timer every 1 to 120 minutes with a few seconds of jitter, occasionally skipped. Bursty: bursts of
 * 3 to 40 invocations a few seconds apart, separated by exponentially distributed gaps averaging 5 to 90
 * minutes. Rare: half Poisson arrivals averaging one every 1 to 6 hours, half timers every 4.5 to 7 hours (beyond
 * a 4-hour histogram). Memory sizes 128 MB to 2 GB; run times 20 ms to 2 s.
 */
export function syntheticTrace(o: TraceOptions): TraceFunction[] {
  const rnd = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const exp = (mean: number): number => -Math.log(1 - rnd()) * mean;
  const end = o.hours * HOUR;
  const memory = [128, 256, 512, 1024, 2048];
  const run = (): number => Math.round(20 + rnd() * rnd() * 1980);
  const out: TraceFunction[] = [];
  const push = (cls: FunctionClass, shape: string, arrivals: number[]): void => {
    const invocations: { at: number; runMs: number }[] = [];
    let free = 0;
    for (const a of arrivals.sort((x, y) => x - y)) {
      const at = Math.max(a, free + 1);
      if (at >= end) break;
      const runMs = run();
      invocations.push({ at, runMs });
      free = at + runMs;
    }
    out.push({ name: `${cls}-${out.filter((f) => f.cls === cls).length + 1}`, cls, memoryMb: pick(memory), shape, invocations });
  };
  const periods = [1, 2, 3, 5, 7, 8, 10, 12, 15, 20, 30, 45, 60, 90, 120];
  for (let i = 0; i < o.perClass; i++) {
    const period = pick(periods) * MIN;
    const jitter = 2000 + rnd() * 3000;
    const skip = rnd() < 0.5 ? 0 : 0.05;
    const arrivals: number[] = [];
    for (let t = rnd() * period; t < end; t += period) if (rnd() >= skip) arrivals.push(t + (rnd() * 2 - 1) * jitter);
    push('periodic', `every ${period / MIN} min ±${(jitter / 1000).toFixed(1)} s${skip > 0 ? ', 5% skipped' : ''}`, arrivals);
  }
  for (let i = 0; i < o.perClass; i++) {
    const gap = (5 + rnd() * 85) * MIN;
    const size = 3 + Math.floor(rnd() * 38);
    const spacing = 1000 + rnd() * 9000;
    const arrivals: number[] = [];
    for (let t = exp(gap); t < end; t += exp(gap)) {
      const n = 1 + Math.floor(rnd() * size);
      for (let k = 0; k < n; k++) arrivals.push((t += exp(spacing)));
    }
    push('bursty', `bursts of 1–${size} every ~${Math.round(gap / MIN)} min (exponential), ~${(spacing / 1000).toFixed(1)} s apart`, arrivals);
  }
  for (let i = 0; i < o.perClass; i++) {
    const arrivals: number[] = [];
    if (i % 2 === 0) {
      const mean = (1 + rnd() * 5) * HOUR;
      for (let t = exp(mean); t < end; t += exp(mean)) arrivals.push(t);
      push('rare', `Poisson, one every ~${(mean / HOUR).toFixed(1)} h`, arrivals);
    } else {
      const period = (4.5 + rnd() * 2.5) * HOUR;
      for (let t = rnd() * period; t < end; t += period) arrivals.push(t + (rnd() * 2 - 1) * 30_000);
      push('rare', `every ${(period / HOUR).toFixed(1)} h ±30 s`, arrivals);
    }
  }
  return out;
}

export interface SimOptions {
  /** A pre-warm starts this long before its pre-warm time (the pool's prewarmLeadMs). */
  readonly leadMs: number;
  /** Time a pre-warm needs before it can serve. */
  readonly initMs: number;
  /** End of the trace: idle environments still loaded then are counted up to here. */
  readonly endMs: number;
}

export interface FunctionResult {
  readonly name: string;
  readonly cls: FunctionClass;
  readonly memoryMb: number;
  readonly invocations: number;
  readonly coldStarts: number;
  /** Idle memory-time, GB·s. */
  readonly idleGbS: number;
  /** Pre-warms started, and how many of them served an invocation. */
  readonly prewarms: number;
  readonly prewarmsUsed: number;
  /** How often each rule decided. */
  readonly rules: Readonly<Record<string, number>>;
}

/** Where the function's environment is after an invocation: loaded from/to, or a pre-warm from/ready/to. */
type Loaded = { readonly from: number; readonly ready: number; readonly until: number; readonly prewarm: boolean } | undefined;

/** Replay each function's invocations against a fresh `policy` (one policy instance holds all functions). */
export function simulate(trace: readonly TraceFunction[], policy: KeepAlivePolicy, o: SimOptions): FunctionResult[] {
  // Replayed in global time order, as a pool would see them (the policy's per-function state is independent,
  // but its memory cap and least-recently-invoked order are not).
  const events = trace.flatMap((f, fi) => f.invocations.map((inv, ii) => ({ fi, ii, at: inv.at }))).sort((a, b) => a.at - b.at);
  const state = trace.map(() => ({ loaded: undefined as Loaded, idleMs: 0, cold: 0, prewarms: 0, prewarmsUsed: 0, rules: {} as Record<string, number> }));
  for (const ev of events) {
    const f = trace[ev.fi] as TraceFunction;
    const s = state[ev.fi] as (typeof state)[number];
    const inv = f.invocations[ev.ii] as { at: number; runMs: number };
    const t = inv.at;
    policy.record(f.name, t);
    const l = s.loaded;
    let warm = false;
    if (l !== undefined && t >= l.from) {
      // Loaded (or starting) when the invocation arrived: idle from `from` until the arrival or the window's end.
      s.idleMs += Math.min(t, l.until) - l.from;
      warm = t >= l.ready && t <= l.until;
      if (warm && l.prewarm) s.prewarmsUsed += 1;
    }
    // A pre-warm that had not started yet is cancelled by the arrival.
    if (!warm) s.cold += 1;
    const done = t + inv.runMs;
    policy.idle(f.name, done);
    const d = policy.decide(f.name, done);
    s.rules[d.rule] = (s.rules[d.rule] ?? 0) + 1;
    if (d.prewarmAtMs === undefined || d.prewarmAtMs - done <= o.leadMs) {
      s.loaded = { from: done, ready: done, until: (d.prewarmAtMs ?? done) + d.keepAliveMs, prewarm: false };
    } else {
      const start = d.prewarmAtMs - o.leadMs;
      s.loaded = { from: start, ready: start + o.initMs, until: d.prewarmAtMs + d.keepAliveMs, prewarm: true };
      s.prewarms += 1;
    }
  }
  return trace.map((f, i) => {
    const s = state[i] as (typeof state)[number];
    const l = s.loaded;
    const tail = l === undefined || l.from >= o.endMs ? 0 : Math.min(l.until, o.endMs) - l.from;
    // A pre-warm scheduled after the last invocation and started before the trace ends also counts as started.
    return {
      name: f.name,
      cls: f.cls,
      memoryMb: f.memoryMb,
      invocations: f.invocations.length,
      coldStarts: s.cold,
      idleGbS: ((s.idleMs + tail) / 1000) * (f.memoryMb / 1024),
      prewarms: s.prewarms - (l?.prewarm === true && l.from >= o.endMs ? 1 : 0),
      prewarmsUsed: s.prewarmsUsed,
      rules: s.rules,
    };
  });
}
