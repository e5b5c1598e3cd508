import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FixedKeepAlive, HistogramKeepAlive, keepAlivePolicy, type KeepAliveDecision } from '../../src/worker/keepalive.js';

/** The policy is pure: time is whatever the test says it is (ms). */
const MIN = 60_000;
const T0 = 1_700_000_000_000;

/** Invocations of `key` arriving after the given idle times, each completing `runMs` after it arrived; returns the last completion time. */
function replay(p: HistogramKeepAlive, key: string, idleTimesMs: readonly number[], runMs = 100, start = T0): number {
  let t = start;
  p.record(key, t);
  p.idle(key, (t += runMs));
  for (const it of idleTimesMs) {
    p.record(key, (t += it));
    p.idle(key, (t += runMs));
  }
  return t;
}

const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} != ${b}`);

void test('a version with too few idle times gets the fallback keep-alive', () => {
  const p = new HistogramKeepAlive({ fallbackKeepAliveMs: 5 * MIN, minSamples: 10 });
  assert.deepEqual(p.decide('unknown', T0), { rule: 'learning', keepAliveMs: 5 * MIN });
  const now = replay(p, 'f', Array<number>(9).fill(10 * MIN + 5000));
  assert.deepEqual(p.decide('f', now), { rule: 'learning', keepAliveMs: 5 * MIN });
});

void test('a periodic version: unload now, pre-warm at the head less the margin, keep to the tail plus the margin', () => {
  const p = new HistogramKeepAlive({ fallbackKeepAliveMs: 5 * MIN, minSamples: 10 });
  // Every 10 minutes and a few seconds: all idle times in the bin [10 min, 11 min).
  const now = replay(p, 'cron', Array.from({ length: 20 }, (_, i) => 10 * MIN + 1000 + (i % 5) * 1000));
  const d = p.decide('cron', now);
  assert.equal(d.rule, 'histogram');
  close(d.prewarmAtMs as number, now + 0.9 * 10 * MIN, 'pre-warm at 90% of the head (bin start)');
  close(d.keepAliveMs, 1.1 * 11 * MIN - 0.9 * 10 * MIN, 'kept from the pre-warm to 110% of the tail (bin end)');
  const s = p.stats('cron');
  assert.equal(s?.samples, 20);
  assert.ok((s?.cv ?? 0) >= 2, `cv ${s?.cv}`);
});

void test('head and tail are the 5th and 99th percentiles of the idle times', () => {
  const p = new HistogramKeepAlive({ margin: 0, minSamples: 10 });
  // 100 idle times: 5 at 2 min, 90 at 20 min, 4 at 40 min, 1 at 100 min.
  const its = [...Array<number>(5).fill(2 * MIN + 1), ...Array<number>(90).fill(20 * MIN + 1), ...Array<number>(4).fill(40 * MIN + 1), 100 * MIN + 1];
  const now = replay(p, 'f', its, 0);
  assert.equal(p.stats('f')?.headMs, 2 * MIN);
  assert.equal(p.stats('f')?.tailMs, 41 * MIN, '99th percentile: the 99th of 100 idle times is in the 40-minute bin');
  const d = p.decide('f', now);
  assert.deepEqual(d, { rule: 'histogram', prewarmAtMs: now + 2 * MIN, keepAliveMs: 39 * MIN });
  // One more idle time at the head moves the 5th percentile into the 2-minute bin still; many more shorter ones move it down.
  const later = replay(p, 'f', Array<number>(20).fill(30_000), 0, now);
  assert.equal(p.stats('f')?.headMs, 0);
  assert.deepEqual(p.decide('f', later), { rule: 'histogram', keepAliveMs: 41 * MIN }, 'a head in the first bin: never unloaded, kept to the tail');
});

void test('a frequently invoked version is kept (no unload) for its tail plus the margin', () => {
  const p = new HistogramKeepAlive({ minSamples: 10 });
  const now = replay(p, 'hot', Array<number>(50).fill(2000));
  const d = p.decide('hot', now);
  assert.equal(d.prewarmAtMs, undefined);
  assert.equal(d.rule, 'histogram');
  close(d.keepAliveMs, 1.1 * MIN, 'tail is the end of the first bin');
});

void test('idle times spread evenly over the range are not representative: the fallback applies', () => {
  const p = new HistogramKeepAlive({ fallbackKeepAliveMs: 7 * MIN, minSamples: 10, cvThreshold: 2 });
  const now = replay(p, 'random', Array.from({ length: 240 }, (_, i) => i * MIN + 30_000));
  assert.ok((p.stats('random')?.cv ?? 1) < 0.01);
  assert.deepEqual(p.decide('random', now), { rule: 'unrepresentative', keepAliveMs: 7 * MIN });
});

void test('idle times are measured from the completion of the previous invocation, not its arrival', () => {
  const p = new HistogramKeepAlive({ minSamples: 3, margin: 0 });
  // Runs of 5 minutes, then 10 minutes and a bit idle: arrivals 15 minutes apart, idle times in the 10-minute bin.
  const now = replay(p, 'long', Array<number>(5).fill(10 * MIN + 1000), 5 * MIN);
  assert.equal(p.stats('long')?.headMs, 10 * MIN);
  // Without completions reported, inter-arrival times are used.
  const q = new HistogramKeepAlive({ minSamples: 3, margin: 0 });
  for (let i = 0; i < 6; i++) q.record('g', T0 + i * 15 * MIN);
  assert.equal(q.stats('g')?.headMs, 15 * MIN);
  assert.ok(now > T0);
});

void test('idle times beyond the range: a forecast from the recent ones, pre-warm at 85% and keep until 115%', () => {
  const p = new HistogramKeepAlive({ minSamples: 10, forecastAlpha: 0.5 });
  assert.equal(p.rangeMs, 240 * MIN);
  const h = 60 * MIN;
  // Two idle times beyond the range are not enough to forecast (minForecastSamples 3): still learning.
  let now = replay(p, 'rare', [5 * h, 5 * h], 0);
  assert.equal(p.decide('rare', now).rule, 'learning');
  now = replay(p, 'rare', [6 * h], 0, now);
  const d: KeepAliveDecision = p.decide('rare', now);
  // Exponential smoothing with alpha 0.5: 5 h, 5 h, then 0.5 * 6 h + 0.5 * 5 h = 5.5 h.
  close(p.stats('rare')?.forecastMs as number, 5.5 * h, 'forecast');
  assert.equal(d.rule, 'forecast');
  close(d.prewarmAtMs as number, now + 0.85 * 5.5 * h, 'pre-warm');
  close(d.keepAliveMs, 0.3 * 5.5 * h, 'keep-alive');
  // When most idle times are in range again, the histogram (or the fallback) decides.
  now = replay(p, 'rare', Array<number>(10).fill(30 * MIN + 1), 0, now);
  assert.equal(p.decide('rare', now).rule, 'histogram');
});

void test('memory is bounded: old idle times fade, and only the most recently invoked versions are remembered', () => {
  const p = new HistogramKeepAlive({ minSamples: 10, decayAtSamples: 100, maxFunctions: 3 });
  let now = replay(p, 'shift', Array<number>(99).fill(30 * MIN + 1), 0);
  assert.equal(p.stats('shift')?.headMs, 30 * MIN);
  // The pattern changes to every 5 minutes: halving at 100 samples lets the new pattern take over.
  now = replay(p, 'shift', Array<number>(600).fill(5 * MIN + 1), 0, now);
  const s = p.stats('shift');
  assert.ok((s?.samples ?? 1000) < 100, `samples ${s?.samples}`);
  assert.equal(s?.headMs, 5 * MIN);
  assert.equal(s?.tailMs, 6 * MIN);
  for (const k of ['a', 'b', 'c']) p.record(k, now);
  p.record('shift', now + 1);
  p.record('d', now + 2);
  assert.equal(p.stats('a'), undefined, 'least recently invoked forgotten');
  assert.notEqual(p.stats('shift'), undefined);
  p.forget('shift');
  assert.equal(p.stats('shift'), undefined);
});

void test('fixed keep-alive, the named policies, and option checks', () => {
  assert.deepEqual(new FixedKeepAlive(600_000).decide(), { rule: 'fixed', keepAliveMs: 600_000 });
  assert.ok(keepAlivePolicy('fixed', 1000) instanceof FixedKeepAlive);
  const h = keepAlivePolicy('histogram', 1234, { binMs: 100 });
  assert.ok(h instanceof HistogramKeepAlive);
  assert.equal(h.decide('x', 0).keepAliveMs, 1234, 'the fixed keep-alive is the fallback');
  assert.equal(h.resolutionMs, 100);
  assert.throws(() => new HistogramKeepAlive({ bins: 1 }), RangeError);
  assert.throws(() => new HistogramKeepAlive({ headPercentile: 99, tailPercentile: 5 }), RangeError);
  assert.throws(() => new HistogramKeepAlive({ margin: 1 }), RangeError);
});
