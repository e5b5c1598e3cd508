import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { VersionRecord } from '../../src/control/model.js';
import type { Environment } from '../../src/worker/environment.js';
import { KeepAliveSchedule } from '../../src/worker/keepalive-schedule.js';
import type { KeepAliveDecision, KeepAlivePolicy } from '../../src/worker/keepalive.js';

/** A policy that answers whatever the test sets, and a clock the test moves. */
function setup(leadMs = 1000) {
  let now = 1_000_000;
  let next: KeepAliveDecision = { rule: 'fixed', keepAliveMs: 5000 };
  const recorded: string[] = [];
  const policy: KeepAlivePolicy = {
    resolutionMs: 100,
    record: (key) => void recorded.push(key),
    idle: () => undefined,
    decide: () => next,
    forget: () => undefined,
  };
  const prewarms: { fn: string; readyAtMs: number; keepAliveMs: number }[] = [];
  const schedule = new KeepAliveSchedule({
    policy,
    fallbackKeepAliveMs: 60_000,
    leadMs,
    now: () => now,
    prewarm: (v, readyAtMs, keepAliveMs) => void prewarms.push({ fn: v.functionName, readyAtMs, keepAliveMs }),
  });
  // Only the fields the schedule reads.
  const env = (fn: string): Environment => ({ lastUsed: now, version: { functionName: fn, version: '$LATEST' } as VersionRecord }) as unknown as Environment;
  return {
    schedule, env, prewarms, recorded,
    set: (d: KeepAliveDecision) => { next = d; },
    advance: (ms: number) => { now += ms; },
    get now() { return now; },
  };
}

test('keep: the environment stays until the end of the window; without a decision, the fallback from its last use', () => {
  const s = setup();
  const e = s.env('f');
  assert.equal(s.schedule.deadline(e), s.now + 60_000);
  assert.equal(s.schedule.idle(e, 'f'), 'keep');
  assert.equal(s.schedule.deadline(e), s.now + 5000);
  assert.equal(s.schedule.reapIntervalMs, 100);
  // A pre-warm time within the lead is not worth an unload: kept through the whole window instead.
  s.set({ rule: 'histogram', prewarmAtMs: s.now + 800, keepAliveMs: 3000 });
  assert.equal(s.schedule.idle(e, 'f'), 'keep');
  assert.equal(s.schedule.deadline(e), s.now + 3800);
  s.schedule.close();
});

test('unload: a pre-warm starts the lead time before the pre-warm time; an arrival or a drain cancels it', async () => {
  const s = setup(1000);
  s.set({ rule: 'histogram', prewarmAtMs: s.now + 1030, keepAliveMs: 700 });
  assert.equal(s.schedule.idle(s.env('f'), 'kf'), 'unload');
  assert.ok(s.schedule.scheduled('kf'));
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(s.prewarms, [{ fn: 'f', readyAtMs: s.now + 1030, keepAliveMs: 700 }]);
  assert.ok(!s.schedule.scheduled('kf'));

  // A pre-warmed environment is kept from its ready time, and counts as unused until it has served.
  const p = s.env('f');
  s.schedule.prewarmed(p, s.now + 1030, 700);
  assert.ok(s.schedule.isUnused(p));
  assert.equal(s.schedule.deadline(p), s.now + 1730);
  s.set({ rule: 'fixed', keepAliveMs: 5000 });
  s.schedule.idle(p, 'kf');
  assert.ok(!s.schedule.isUnused(p));

  s.set({ rule: 'histogram', prewarmAtMs: s.now + 60_000, keepAliveMs: 700 });
  s.schedule.idle(s.env('g'), 'kg');
  s.schedule.idle(s.env('h'), 'kh');
  s.schedule.arrived('kg');
  assert.deepEqual(s.recorded, ['kg']);
  assert.ok(!s.schedule.scheduled('kg'), 'the invocation came first');
  s.schedule.cancel('h');
  assert.ok(!s.schedule.scheduled('kh'), 'drained');
  s.schedule.close();
});
