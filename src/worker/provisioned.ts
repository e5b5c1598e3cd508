import type { Logger } from '../util/log.js';
import { ThawError, isThawError } from '../util/errors.js';
import type { Registry } from '../control/registry.js';
import type { VersionRecord } from '../control/model.js';
import type { ConcurrencyStore, ProvisionedConfigRecord } from '../control/concurrency-store.js';
import type { Concurrency } from '../router/concurrency.js';
import { InitFailure, type Environment } from './environment.js';
import type { Pool } from './pool.js';

/**
 * A configuration's allocation, as Lambda reports it:
 *
 *   IN_PROGRESS ─> READY            every requested environment has run Init
 *        └──────> FAILED            Init failed, or environments kept stopping soon after it (StatusReason),
 *                                   until the configuration is put again
 *   READY ─> IN_PROGRESS            an environment was lost and is being re-created, or more were requested
 *
 * An environment lost before it served an invocation and less than `healthyMs` after it was ready (a runtime that
 * crashes after Init) counts as a failure; each failure in a row doubles
 * the wait before the next one is created (from `backoffBaseMs`, at most `backoffMaxMs`), and after `failAfter`
 * in a row the configuration is FAILED. One that lived longer is simply replaced, and the count starts again.
 */
export type ProvisionedStatus = 'IN_PROGRESS' | 'READY' | 'FAILED';

export interface ProvisionedView {
  readonly functionName: string;
  readonly qualifier: string;
  /** The version the configuration serves now (an alias's target). */
  readonly version: string;
  readonly requested: number;
  readonly allocated: number;
  readonly available: number;
  readonly status: ProvisionedStatus;
  readonly statusReason?: string;
  readonly lastModified: number;
}

interface Allocation {
  readonly functionName: string;
  readonly qualifier: string;
  version: VersionRecord;
  requested: number;
  lastModified: number;
  status: ProvisionedStatus;
  reason?: string;
  readonly envs: Set<Environment>;
  starting: number;
  closed: boolean;
  retry?: NodeJS.Timeout;
  /** When each environment became ready. */
  readonly readySince: Map<Environment, number>;
  /** Environments in a row lost soon after they were ready; none are started before `backoffUntil`. */
  failures: number;
  backoffUntil: number;
}

/** How provisioned environments that keep stopping are backed off, and when the configuration is given up. */
export interface ProvisionedBackoff {
  readonly healthyMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly failAfter: number;
}

export const DEFAULT_PROVISIONED_BACKOFF: ProvisionedBackoff = Object.freeze({
  healthyMs: 60_000,
  backoffBaseMs: 1000,
  backoffMaxMs: 60_000,
  failAfter: 5,
});

const INIT_FAILURE = 'FUNCTION_ERROR_INIT_FAILURE';
const keyOf = (fn: string, qualifier: string): string => `${fn}\u0000${qualifier}`;

/**
 * Provisioned concurrency: for each configuration (a published version or an alias), keep the requested number
 * of environments initialised ahead of traffic. The pool leases them before any other environment of the version
 * and never reaps them; one that stops is re-created. Configurations are stored, and allocated again when Thaw
 * starts. An alias's configuration follows the alias to the version it points at.
 */
export class ProvisionedConcurrency {
  private readonly allocations = new Map<string, Allocation>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private readonly backoff: ProvisionedBackoff;

  constructor(private readonly o: {
    readonly pool: Pool;
    readonly registry: Registry;
    readonly store: ConcurrencyStore;
    readonly concurrency: Concurrency;
    readonly logger: Logger;
    /** How often configurations are checked against their alias, version and environments. */
    readonly reconcileMs?: number;
    readonly backoff?: Partial<ProvisionedBackoff>;
  }) {
    this.backoff = Object.freeze({ ...DEFAULT_PROVISIONED_BACKOFF, ...o.backoff });
    this.timer = setInterval(() => this.reconcile(), o.reconcileMs ?? 1000);
    this.timer.unref();
  }

  /** After a start: allocate every stored configuration again. */
  resume(): void {
    for (const c of this.o.store.allProvisioned()) this.apply(c);
  }

  /**
   * PutProvisionedConcurrencyConfig, after the API checked the qualifier: store the configuration and (re)start
   * its allocation. A configuration on an alias and one on the alias's version cannot both exist.
   */
  put(functionName: string, qualifier: string, requested: number): ProvisionedView {
    const { version, alias } = this.o.registry.resolve(functionName, qualifier);
    for (const a of this.allocations.values()) {
      if (a.functionName !== functionName || a.qualifier === qualifier) continue;
      if (alias !== undefined && a.qualifier === version.version) {
        throw new ThawError('ResourceConflict', "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version");
      }
      if (alias === undefined && a.qualifier !== version.version && a.version.version === version.version) {
        throw new ThawError('ResourceConflict', 'Version is pointed by a Provisioned Concurrency alias');
      }
    }
    this.o.concurrency.checkProvisioned(functionName, qualifier, requested);
    const rec = this.o.store.putProvisioned(functionName, qualifier, requested, Date.now());
    return this.apply(rec, true);
  }

  get(functionName: string, qualifier: string): ProvisionedView | undefined {
    const a = this.allocations.get(keyOf(functionName, qualifier));
    return a === undefined ? undefined : view(a);
  }

  list(functionName: string): ProvisionedView[] {
    return [...this.allocations.values()].filter((a) => a.functionName === functionName)
      .sort((x, y) => (x.qualifier < y.qualifier ? -1 : x.qualifier > y.qualifier ? 1 : 0)).map(view);
  }

  /** DeleteProvisionedConcurrencyConfig: false when there was none. */
  delete(functionName: string, qualifier: string): boolean {
    const removed = this.o.store.deleteProvisioned(functionName, qualifier);
    const a = this.allocations.get(keyOf(functionName, qualifier));
    if (a !== undefined) this.drop(a);
    return removed || a !== undefined;
  }

  private apply(rec: ProvisionedConfigRecord, restart = false): ProvisionedView {
    const k = keyOf(rec.functionName, rec.qualifier);
    let version: VersionRecord;
    try {
      version = this.o.registry.resolve(rec.functionName, rec.qualifier).version;
    } catch (e) {
      if (isThawError(e) && e.code === 'ResourceNotFound') {
        this.o.store.deleteProvisioned(rec.functionName, rec.qualifier);
        const gone = this.allocations.get(k);
        if (gone !== undefined) this.drop(gone);
      }
      throw e;
    }
    let a = this.allocations.get(k);
    if (a === undefined) {
      a = {
        functionName: rec.functionName, qualifier: rec.qualifier, version, requested: rec.requested, lastModified: rec.lastModified,
        status: 'IN_PROGRESS', envs: new Set(), starting: 0, closed: false, readySince: new Map(), failures: 0, backoffUntil: 0,
      };
      this.allocations.set(k, a);
    } else {
      a.requested = rec.requested;
      a.lastModified = rec.lastModified;
      if (restart && a.status === 'FAILED') {
        a.status = 'IN_PROGRESS';
        delete a.reason;
        a.failures = 0;
        a.backoffUntil = 0;
      }
      if (a.version.version !== version.version) this.retarget(a, version);
    }
    this.o.concurrency.setProvisioned(a.functionName, a.qualifier, a.version.version, a.requested);
    this.fill(a);
    return view(a);
  }

  /** Start or stop environments until the allocation has what was requested. */
  private fill(a: Allocation): void {
    if (a.closed || this.closed) return;
    for (const env of [...a.envs]) {
      if (a.envs.size <= a.requested) break;
      a.envs.delete(env);
      this.o.pool.unprovision(env);
    }
    if (a.status === 'FAILED') return;
    const current = this.o.registry.getVersion(a.functionName, a.version.version);
    if (current === undefined) return;
    if (current.state === 'Failed') {
      this.fail(a, current.stateReason ?? INIT_FAILURE);
      return;
    }
    if (current.state === 'Active') {
      a.version = current;
      const wait = a.backoffUntil - Date.now();
      if (wait > 0 && a.envs.size + a.starting < a.requested) {
        // Backing off after environments that kept stopping: the next one is started when the wait is over.
        a.retry ??= setTimeout(() => {
          a.retry = undefined;
          this.fill(a);
        }, wait);
        a.retry.unref();
        a.status = 'IN_PROGRESS';
        return;
      }
      while (a.envs.size + a.starting < a.requested) {
        a.starting++;
        void this.startOne(a, current);
      }
    }
    a.status = a.envs.size >= a.requested ? 'READY' : 'IN_PROGRESS';
  }

  private async startOne(a: Allocation, version: VersionRecord): Promise<void> {
    let env: Environment | undefined;
    try {
      const made: Environment = await this.o.pool.provision(version, () => this.lostOne(a, made));
      env = made;
    } catch (e) {
      a.starting--;
      if (a.closed || a.version.version !== version.version) return;
      if (e instanceof InitFailure) {
        this.o.logger.warn({ fn: a.functionName, qualifier: a.qualifier, errorType: e.errorType }, 'provisioned concurrency: Init failed');
        this.fail(a, INIT_FAILURE);
        return;
      }
      // The worker is full or shutting down: try again shortly, still IN_PROGRESS.
      this.o.logger.warn({ fn: a.functionName, qualifier: a.qualifier, err: e }, 'provisioned concurrency: could not place an environment; retrying');
      a.retry ??= setTimeout(() => {
        a.retry = undefined;
        this.fill(a);
      }, 1000);
      a.retry.unref();
      a.status = 'IN_PROGRESS';
      return;
    }
    a.starting--;
    if (a.closed || a.status === 'FAILED' || a.version.version !== version.version || a.envs.size >= a.requested) {
      this.o.pool.unprovision(env);
      return;
    }
    a.envs.add(env);
    a.readySince.set(env, Date.now());
    if (a.envs.size >= a.requested) a.status = 'READY';
  }

  private lostOne(a: Allocation, env: Environment): void {
    if (!a.envs.delete(env)) return;
    const since = a.readySince.get(env) ?? 0;
    a.readySince.delete(env);
    const b = this.backoff;
    // Lost while or after serving (a crash, timeout or out-of-memory of an invocation): replaced at once, as on Lambda.
    if (Date.now() - since >= b.healthyMs || env.lastUsed >= since) {
      a.failures = 0;
      this.o.logger.info({ fn: a.functionName, qualifier: a.qualifier }, 'provisioned environment stopped; re-creating it');
      this.fill(a);
      return;
    }
    a.failures++;
    if (a.failures >= b.failAfter) {
      this.o.logger.warn({ fn: a.functionName, qualifier: a.qualifier, failures: a.failures }, 'provisioned concurrency: environments keep stopping after Init; FAILED');
      this.fail(a, `${a.failures} provisioned environments in a row stopped after Init before serving an invocation; put the configuration again to retry`);
      return;
    }
    const wait = Math.min(b.backoffMaxMs, b.backoffBaseMs * 2 ** (a.failures - 1));
    a.backoffUntil = Date.now() + wait;
    this.o.logger.warn({ fn: a.functionName, qualifier: a.qualifier, failures: a.failures, waitMs: wait }, 'provisioned environment stopped soon after Init; re-creating it after a wait');
    a.status = 'IN_PROGRESS';
    this.fill(a);
  }

  private fail(a: Allocation, reason: string): void {
    a.status = 'FAILED';
    a.reason = reason;
    if (a.retry !== undefined) clearTimeout(a.retry);
    a.retry = undefined;
    a.readySince.clear();
    for (const env of a.envs) this.o.pool.unprovision(env);
    a.envs.clear();
  }

  private retarget(a: Allocation, version: VersionRecord): void {
    for (const env of a.envs) this.o.pool.unprovision(env);
    a.envs.clear();
    a.readySince.clear();
    a.failures = 0;
    a.backoffUntil = 0;
    a.version = version;
    if (a.status !== 'FAILED') a.status = 'IN_PROGRESS';
  }

  private drop(a: Allocation): void {
    a.closed = true;
    if (a.retry !== undefined) clearTimeout(a.retry);
    for (const env of a.envs) this.o.pool.unprovision(env);
    a.envs.clear();
    this.allocations.delete(keyOf(a.functionName, a.qualifier));
    this.o.concurrency.setProvisioned(a.functionName, a.qualifier, undefined, 0);
  }

  /** Follow aliases to their current version; drop configurations whose function, version or alias is gone. */
  private reconcile(): void {
    for (const a of [...this.allocations.values()]) {
      const rec = this.o.store.getProvisioned(a.functionName, a.qualifier);
      if (rec === undefined) {
        this.drop(a);
        continue;
      }
      try {
        this.apply(rec);
      } catch (e) {
        if (!(isThawError(e) && e.code === 'ResourceNotFound')) this.o.logger.warn({ err: e, fn: a.functionName }, 'provisioned concurrency: reconcile failed');
      }
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const a of this.allocations.values()) {
      a.closed = true;
      if (a.retry !== undefined) clearTimeout(a.retry);
    }
  }
}

function view(a: Allocation): ProvisionedView {
  const live = [...a.envs].filter((e) => e.state === 'idle' || e.state === 'busy').length;
  return {
    functionName: a.functionName,
    qualifier: a.qualifier,
    version: a.version.version,
    requested: a.requested,
    allocated: live,
    available: live,
    status: a.status,
    ...(a.reason === undefined ? {} : { statusReason: a.reason }),
    lastModified: a.lastModified,
  };
}
