import type { VersionRecord } from '../control/model.js';
import type { Environment } from './environment.js';
import type { KeepAlivePolicy } from './keepalive.js';

export interface KeepAliveScheduleOptions {
  readonly policy: KeepAlivePolicy;
  /** Keep-alive of an environment the policy was never asked about. */
  readonly fallbackKeepAliveMs: number;
  /** How long before the predicted invocation a pre-warm starts (the Init has to be done by then). */
  readonly leadMs: number;
  /** Start an environment of this version, ready by `readyAtMs` and kept until `keepAliveMs` after that. */
  readonly prewarm: (version: VersionRecord, readyAtMs: number, keepAliveMs: number) => void;
  readonly now?: () => number;
}

interface Pending {
  readonly timer: NodeJS.Timeout;
  readonly functionName: string;
  readonly version: string;
}

/**
 * The pool's side of a keep-alive policy: until when each idle environment is kept, which versions get an
 * environment started ahead of their predicted next invocation (and when), and which idle environments were
 * pre-warmed and have not served yet (the first to go when the worker needs room).
 */
export class KeepAliveSchedule {
  private readonly until = new WeakMap<Environment, number>();
  private readonly unused = new WeakSet<Environment>();
  private readonly pending = new Map<string, Pending>();
  private readonly now: () => number;

  constructor(private readonly o: KeepAliveScheduleOptions) {
    this.now = o.now ?? Date.now;
  }

  /** How often a reaper should look at idle environments. */
  get reapIntervalMs(): number {
    return Math.min(this.o.fallbackKeepAliveMs, this.o.policy.resolutionMs);
  }

  /** An invocation of the version arrived: it feeds the policy, and a pre-warm still waiting for it is moot. */
  arrived(key: string): void {
    this.o.policy.record(key, this.now());
    this.cancelKey(key);
  }

  /**
   * An environment finished an invocation and is idle. `unload` when the policy wants it stopped now; a pre-warm
   * of its version is then scheduled. An unload is not worth it when the environment would be started again
   * within the lead time: it is kept instead, until the end of the policy's window.
   */
  idle(env: Environment, key: string): 'keep' | 'unload' {
    this.unused.delete(env);
    const now = this.now();
    this.o.policy.idle(key, now);
    const d = this.o.policy.decide(key, now);
    if (d.prewarmAtMs === undefined || d.prewarmAtMs - now <= this.o.leadMs) {
      this.until.set(env, (d.prewarmAtMs ?? now) + d.keepAliveMs);
      return 'keep';
    }
    this.schedule(key, env.version, d.prewarmAtMs, d.keepAliveMs);
    return 'unload';
  }

  private schedule(key: string, version: VersionRecord, readyAtMs: number, keepAliveMs: number): void {
    this.cancelKey(key);
    const timer = setTimeout(() => {
      this.pending.delete(key);
      this.o.prewarm(version, readyAtMs, keepAliveMs);
    }, Math.max(0, readyAtMs - this.o.leadMs - this.now()));
    timer.unref();
    this.pending.set(key, { timer, functionName: version.functionName, version: version.version });
  }

  /** A pre-warmed environment is ready: it is kept for the policy's window and goes first under pressure. */
  prewarmed(env: Environment, readyAtMs: number, keepAliveMs: number): void {
    this.until.set(env, Math.max(this.now(), readyAtMs) + keepAliveMs);
    this.unused.add(env);
  }

  /** Pre-warmed and not used since. */
  isUnused(env: Environment): boolean {
    return this.unused.has(env);
  }

  /** When an idle environment is to be stopped. */
  deadline(env: Environment): number {
    return this.until.get(env) ?? env.lastUsed + this.o.fallbackKeepAliveMs;
  }

  /** Whether a pre-warm is scheduled for the version (for tests and drain). */
  scheduled(key: string): boolean {
    return this.pending.has(key);
  }

  /** Drop scheduled pre-warms of a function (one version, or all). */
  cancel(functionName: string, version?: string): void {
    for (const [key, p] of this.pending) {
      if (p.functionName === functionName && (version === undefined || p.version === version)) this.cancelKey(key);
    }
  }

  private cancelKey(key: string): void {
    const p = this.pending.get(key);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(key);
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}
