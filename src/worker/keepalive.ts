/**
 * Keep-alive and pre-warm policies: how long an idle execution environment of a function version is kept, and
 * whether it is unloaded at once and started again just before the version's next invocation is expected.
 *
 * A policy is pure logic over the times it is given (no timers, no clock of its own), so the pool and the
 * trace simulator in bench/keepalive.ts drive the same code. Per invocation it costs O(1) time; per function
 * version a fixed amount of memory; the number of versions it remembers is capped (least recently invoked first out).
 */

/** What to do with a version's environment that has just gone idle. */
export interface KeepAliveDecision {
  /**
   * Which rule decided: `fixed` (a fixed keep-alive), `learning` (too few idle times observed yet),
   * `unrepresentative` (idle times spread too evenly to predict), `histogram` (head and tail of the version's
   * idle-time histogram), `forecast` (most idle times longer than the histogram's range: a time-series forecast).
   */
  readonly rule: 'fixed' | 'learning' | 'unrepresentative' | 'histogram' | 'forecast';
  /**
   * How long to keep an environment: counted from now, or, when `prewarmAtMs` is set, from that time.
   */
  readonly keepAliveMs: number;
  /** Unload the environment now and have one ready (Init done) of this version at this time (epoch ms). */
  readonly prewarmAtMs?: number;
}

export interface KeepAlivePolicy {
  /** An invocation of `key` arrived at `t` (epoch ms). */
  record(key: string, t: number): void;
  /** An invocation of `key` completed at `t`: its environment is idle from then. Optional for a caller. */
  idle(key: string, t: number): void;
  /** The keep-alive (and pre-warm) for an environment of `key` that is idle at `now`. */
  decide(key: string, now: number): KeepAliveDecision;
  /** Drop what is known about `key` (the version was changed or deleted). */
  forget(key: string): void;
  /** Granularity of the windows this policy gives, so that a reaper can check often enough. */
  readonly resolutionMs: number;
}

/** Every environment is kept for the same time after its last invocation (Lambda's and Thaw's historical default). */
export class FixedKeepAlive implements KeepAlivePolicy {
  constructor(readonly keepAliveMs: number) {}
  get resolutionMs(): number {
    return this.keepAliveMs;
  }
  record(): void {}
  idle(): void {}
  forget(): void {}
  decide(): KeepAliveDecision {
    return { rule: 'fixed', keepAliveMs: this.keepAliveMs };
  }
}

/** What a user may set; every field has a default (the paper's values where it gives one). */
export interface HistogramPolicyOptions {
  /** Width of one histogram bin. Paper: 1 minute. */
  readonly binMs?: number;
  /** Number of bins; binMs × bins is the histogram's range. Paper: 240 (4 hours). */
  readonly bins?: number;
  /** Percentile of idle times that sets the pre-warm window. Paper: 5. */
  readonly headPercentile?: number;
  /** Percentile of idle times that sets the end of the keep-alive window. Paper: 99. */
  readonly tailPercentile?: number;
  /** Safety margin: the pre-warm window is shortened and the window's end extended by this fraction. Paper: 0.1. */
  readonly margin?: number;
  /** Idle times needed before the histogram is trusted. */
  readonly minSamples?: number;
  /** Coefficient of variation of the bin counts at or above which the histogram is representative. Paper: 2. */
  readonly cvThreshold?: number;
  /** Fraction of idle times beyond the range above which the forecast decides instead of the histogram. */
  readonly outOfRangeFraction?: number;
  /** Out-of-range idle times needed before the forecast is used (they are hours apart, so fewer than minSamples). */
  readonly minForecastSamples?: number;
  /** Keep-alive while the histogram is not (yet) representative. */
  readonly fallbackKeepAliveMs?: number;
  /** Margin around a forecast idle time: pre-warm at (1 − m) × forecast, keep until (1 + m) × forecast. Paper: 0.15. */
  readonly forecastMargin?: number;
  /** Smoothing factor of the forecast (weight of the newest out-of-range idle time). */
  readonly forecastAlpha?: number;
  /** When a version has this many (decayed) idle times, all its counts are halved, so that old behaviour fades. */
  readonly decayAtSamples?: number;
  /** Versions remembered; the least recently invoked is forgotten beyond this. */
  readonly maxFunctions?: number;
}

type Compiled = Required<HistogramPolicyOptions>;

export const HISTOGRAM_DEFAULTS: Compiled = Object.freeze({
  binMs: 60_000,
  bins: 240,
  headPercentile: 5,
  tailPercentile: 99,
  margin: 0.1,
  minSamples: 10,
  cvThreshold: 2,
  outOfRangeFraction: 0.5,
  minForecastSamples: 3,
  fallbackKeepAliveMs: 5 * 60_000,
  forecastMargin: 0.15,
  forecastAlpha: 0.5,
  decayAtSamples: 1000,
  maxFunctions: 10_000,
});

function compile(o: HistogramPolicyOptions): Compiled {
  const c: Compiled = { ...HISTOGRAM_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new RangeError(`keep-alive histogram: ${what}`);
  };
  check(c.binMs > 0 && c.bins >= 2 && Number.isInteger(c.bins), 'binMs must be > 0 and bins an integer >= 2');
  check(c.headPercentile >= 0 && c.headPercentile < c.tailPercentile && c.tailPercentile <= 100, 'need 0 <= head < tail <= 100');
  check(c.margin >= 0 && c.margin < 1 && c.forecastMargin >= 0 && c.forecastMargin < 1, 'margins must be in [0, 1)');
  check(c.minSamples >= 1 && c.minForecastSamples >= 1 && c.decayAtSamples > c.minSamples, 'need 1 <= minSamples < decayAtSamples, minForecastSamples >= 1');
  check(c.forecastAlpha > 0 && c.forecastAlpha <= 1, 'forecastAlpha must be in (0, 1]');
  check(c.fallbackKeepAliveMs >= 0 && c.maxFunctions >= 1, 'fallbackKeepAliveMs >= 0, maxFunctions >= 1');
  return Object.freeze(c);
}

/** What is kept per function version: a fixed-size histogram and a few numbers. */
interface FnState {
  /** Idle-time counts per bin (decayed, hence fractional). */
  readonly counts: Float32Array;
  /** Sum of counts, and sum of their squares (for the coefficient of variation without a pass over the bins). */
  inRange: number;
  sumSq: number;
  /** Idle times longer than the range (decayed like the counts). */
  outOfRange: number;
  lastArrival: number;
  lastIdle: number;
  /** Smoothed out-of-range idle time, in ms; NaN until there is one. */
  forecastMs: number;
  /** Head and tail (ms) computed from the counts, valid until the next record. */
  cached?: { readonly headMs: number; readonly tailMs: number };
}

/**
 * The hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC '20), per function version:
 *
 * - Every invocation adds its idle time (time since the version was last busy) to a histogram of `bins` bins of
 *   `binMs` each (paper: 240 one-minute bins, a 4-hour range); longer idle times are counted as out of range.
 * - When enough idle times fall in range and the bin counts are concentrated (coefficient of variation at or
 *   above `cvThreshold`), the histogram is representative: the pre-warm window is its head (5th percentile, bin
 *   start) shortened by the margin, and the keep-alive window runs to its tail (99th percentile, bin end) extended
 *   by the margin. A head in the first bin means the environment is not unloaded at all; otherwise it is unloaded
 *   after the invocation and loaded again when the pre-warm window ends.
 * - When most idle times are beyond the range, the paper fits an ARIMA model per function to predict the next
 *   idle time. This implementation does not fit ARIMA: it forecasts with simple exponential smoothing of the
 *   out-of-range idle times (`forecastAlpha`), which is ARIMA(0,1,1) with a fixed rather than fitted coefficient.
 *   Like the paper it then pre-warms at (1 − 15%) × forecast and keeps the environment until (1 + 15%) × forecast.
 * - Otherwise (too few samples, or idle times too spread out to predict) the fixed `fallbackKeepAliveMs` applies.
 *   The paper falls back to keeping the environment for the histogram's whole range; Thaw falls back to the
 *   operator's fixed keep-alive, so the histogram policy never holds memory longer than the fixed one while learning.
 *
 * Bounded: per version one Float32Array of `bins` counts and a few numbers; old behaviour fades (all counts halve
 * when a version reaches `decayAtSamples`); at most `maxFunctions` versions, least recently invoked forgotten first.
 */
export class HistogramKeepAlive implements KeepAlivePolicy {
  readonly options: Compiled;
  private readonly fns = new Map<string, FnState>();

  constructor(options: HistogramPolicyOptions = {}) {
    this.options = compile(options);
  }

  get resolutionMs(): number {
    return this.options.binMs;
  }

  /** Range of the histogram: idle times at or beyond this are out of range. */
  get rangeMs(): number {
    return this.options.binMs * this.options.bins;
  }

  record(key: string, t: number): void {
    let s = this.fns.get(key);
    if (s === undefined) {
      s = { counts: new Float32Array(this.options.bins), inRange: 0, sumSq: 0, outOfRange: 0, lastArrival: t, lastIdle: Number.NaN, forecastMs: Number.NaN };
      this.fns.set(key, s);
      if (this.fns.size > this.options.maxFunctions) this.fns.delete(this.fns.keys().next().value as string);
      return;
    }
    // Most recently invoked last: re-inserting keeps the Map's order an LRU order, in O(1).
    this.fns.delete(key);
    this.fns.set(key, s);
    // The version was last busy at its last completion, or, when none has been reported since the last
    // arrival (still running, or the caller does not report completions), at its last arrival.
    const since = s.lastIdle >= s.lastArrival ? s.lastIdle : s.lastArrival;
    s.lastArrival = Math.max(s.lastArrival, t);
    this.add(s, Math.max(0, t - since));
  }

  idle(key: string, t: number): void {
    const s = this.fns.get(key);
    if (s !== undefined && !(t <= s.lastIdle)) s.lastIdle = t;
  }

  forget(key: string): void {
    this.fns.delete(key);
  }

  private add(s: FnState, idleMs: number): void {
    const o = this.options;
    const bin = Math.floor(idleMs / o.binMs);
    if (bin >= o.bins) {
      s.outOfRange += 1;
      s.forecastMs = Number.isNaN(s.forecastMs) ? idleMs : o.forecastAlpha * idleMs + (1 - o.forecastAlpha) * s.forecastMs;
    } else {
      const c = s.counts[bin] as number;
      s.counts[bin] = c + 1;
      s.sumSq += 2 * c + 1;
      s.inRange += 1;
    }
    s.cached = undefined;
    if (s.inRange + s.outOfRange >= o.decayAtSamples) {
      // Amortised O(1): one pass over the bins every decayAtSamples / 2 invocations.
      let sq = 0;
      for (let i = 0; i < s.counts.length; i++) {
        const h = (s.counts[i] as number) / 2;
        s.counts[i] = h;
        sq += h * h;
      }
      s.sumSq = sq;
      s.inRange /= 2;
      s.outOfRange /= 2;
    }
  }

  /** Coefficient of variation of the bin counts (standard deviation over mean); 0 for an empty histogram. */
  static cv(inRange: number, sumSq: number, bins: number): number {
    if (inRange <= 0) return 0;
    const mean = inRange / bins;
    const variance = Math.max(0, sumSq / bins - mean * mean);
    return Math.sqrt(variance) / mean;
  }

  /** What the policy knows about a version, for logs and tests. */
  stats(key: string): { samples: number; outOfRange: number; cv: number; headMs?: number; tailMs?: number; forecastMs?: number } | undefined {
    const s = this.fns.get(key);
    if (s === undefined) return undefined;
    const { headMs, tailMs } = this.headTail(s);
    return {
      samples: s.inRange + s.outOfRange,
      outOfRange: s.outOfRange,
      cv: HistogramKeepAlive.cv(s.inRange, s.sumSq, this.options.bins),
      ...(s.inRange > 0 ? { headMs, tailMs } : {}),
      ...(Number.isNaN(s.forecastMs) ? {} : { forecastMs: s.forecastMs }),
    };
  }

  /** Head (start of the head percentile's bin) and tail (end of the tail percentile's bin), in ms. */
  private headTail(s: FnState): { headMs: number; tailMs: number } {
    if (s.cached !== undefined) return s.cached;
    const o = this.options;
    const headAt = (o.headPercentile / 100) * s.inRange;
    const tailAt = (o.tailPercentile / 100) * s.inRange;
    let cum = 0;
    let head = -1;
    let tail = o.bins - 1;
    for (let i = 0; i < o.bins; i++) {
      const c = s.counts[i] as number;
      if (c <= 0) continue;
      cum += c;
      if (head < 0 && cum >= headAt) head = i;
      if (cum >= tailAt - 1e-9) {
        tail = i;
        break;
      }
    }
    s.cached = { headMs: Math.max(0, head) * o.binMs, tailMs: (tail + 1) * o.binMs };
    return s.cached;
  }

  decide(key: string, now: number): KeepAliveDecision {
    const o = this.options;
    const s = this.fns.get(key);
    if (s === undefined) return { rule: 'learning', keepAliveMs: o.fallbackKeepAliveMs };
    const samples = s.inRange + s.outOfRange;
    if (s.outOfRange >= o.minForecastSamples && s.outOfRange > o.outOfRangeFraction * samples && !Number.isNaN(s.forecastMs)) {
      return {
        rule: 'forecast',
        prewarmAtMs: now + (1 - o.forecastMargin) * s.forecastMs,
        keepAliveMs: 2 * o.forecastMargin * s.forecastMs,
      };
    }
    if (samples < o.minSamples) return { rule: 'learning', keepAliveMs: o.fallbackKeepAliveMs };
    if (s.inRange < o.minSamples || HistogramKeepAlive.cv(s.inRange, s.sumSq, o.bins) < o.cvThreshold) {
      return { rule: 'unrepresentative', keepAliveMs: o.fallbackKeepAliveMs };
    }
    const { headMs, tailMs } = this.headTail(s);
    const prewarmMs = headMs * (1 - o.margin);
    const endMs = tailMs * (1 + o.margin);
    if (prewarmMs <= 0) return { rule: 'histogram', keepAliveMs: endMs };
    return { rule: 'histogram', prewarmAtMs: now + prewarmMs, keepAliveMs: endMs - prewarmMs };
  }
}

export type KeepAlivePolicyName = 'histogram' | 'fixed';

/** The policy `thaw serve --keep-alive-policy` names, with the fixed keep-alive as the histogram's fallback. */
export function keepAlivePolicy(name: KeepAlivePolicyName, keepAliveMs: number, histogram: HistogramPolicyOptions = {}): KeepAlivePolicy {
  return name === 'fixed' ? new FixedKeepAlive(keepAliveMs) : new HistogramKeepAlive({ fallbackKeepAliveMs: keepAliveMs, ...histogram });
}
