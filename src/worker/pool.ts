import type { Logger } from '../util/log.js';
import { ThawError } from '../util/errors.js';
import type { SandboxDriver } from '../sandbox/driver.js';
import type { RuntimeApiServer } from '../sandbox/runtime-api.js';
import type { VersionRecord } from '../control/model.js';
import type { LogStore } from '../logs/store.js';
import { endLine, reportLine, startLine } from '../logs/format.js';
import { Environment, InitFailure, type InvokeInput, type InvokeOutcome, type LogEntry, type RestoreSource } from './environment.js';
import { runtimeTable, type RuntimeDef } from './runtimes.js';
import { StemCells } from './stems.js';
import { CodeCacheStore, type CodeCacheHandle } from './code-cache.js';

export interface PoolOptions {
  readonly driver: SandboxDriver;
  readonly rapi: RuntimeApiServer;
  readonly logs: LogStore;
  /** Host directory of a code package, by its hex SHA-256 (materialised from the store when needed). */
  readonly codeDir: (sha256: string) => string | Promise<string>;
  readonly socketDir: string;
  readonly region: string;
  readonly logger: Logger;
  /** How long an idle environment is kept. */
  readonly keepAliveMs: number;
  /** Cap on environments (all states) and on the sum of their memory sizes. */
  readonly maxEnvironments: number;
  readonly maxMemoryBytes: number;
  readonly initTimeoutMs?: number;
  /** Post-init code caches; none when absent. */
  readonly codeCaches?: CodeCacheStore;
  /** The SnapStart snapshot to restore a version from, if it has a usable one. */
  readonly snapshots?: (version: VersionRecord) => Promise<RestoreSource | undefined>;
  /** Called first on a cold start of a version (the store prefetches what it will read, in recorded order). */
  readonly beforeColdStart?: (version: VersionRecord) => void;
}

export interface PoolOutcome extends InvokeOutcome {
  readonly cold: boolean;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.POSITIVE_INFINITY;

const keyOf = (v: VersionRecord): string => `${v.functionName}\u0000${v.version}\u0000${v.revisionId}`;

/**
 * Execution environments of every function version on this worker. Warm first: an idle environment of the
 * version is leased (most recently used first, so the rest can age out); otherwise a new one is placed,
 * evicting the least recently used idle environment of any function when the worker is full.
 */
export class Pool {
  private readonly idle = new Map<string, Environment[]>();
  private readonly all = new Set<Environment>();
  private readonly retired = new Set<string>();
  private readonly reaper: NodeJS.Timeout;
  private closed = false;
  private stems: StemCells | undefined;
  /** Invocations answered but not yet complete, per version key; and requests waiting for one of them. */
  private readonly finishing = new Map<string, number>();
  private readonly waiters = new Map<string, ((env: Environment | undefined) => void)[]>();
  /** Recent start times (ms) per version and start path, for choosing the faster path. */
  private readonly startTimes = new Map<string, { restore: number[]; stem: number[] }>();

  constructor(private readonly o: PoolOptions) {
    this.reaper = setInterval(() => this.reap(), Math.min(30_000, Math.max(250, Math.floor(o.keepAliveMs / 4))));
    this.reaper.unref();
  }

  get size(): number {
    return this.all.size;
  }

  /**
   * Run one invocation. With `log: false` the result is returned as soon as the runtime has answered, without
   * waiting for the invocation to complete (END/REPORT and the runtime's next request); its log is stored later.
   */
  async invoke(version: VersionRecord, input: InvokeInput, opts: { log: boolean } = { log: true }): Promise<PoolOutcome> {
    if (this.closed) throw new ThawError('ServiceUnavailable', 'The worker is shutting down.');
    const key = keyOf(version);
    const warm = this.idle.get(key)?.pop() ?? (await this.finishingEnvironment(key));
    if (warm !== undefined) return this.run(warm, key, input, false, opts.log);

    const runtime = version.config.runtime === null ? undefined : runtimeTable().get(version.config.runtime);
    if (runtime === undefined) throw new ThawError('InvalidRuntime', `The runtime parameter of ${version.config.runtime ?? 'null'} is not supported on this worker.`);
    await this.makeRoom(version.config.memoryMb * 1024 * 1024);
    this.o.beforeColdStart?.(version);
    const codeDir = await this.o.codeDir(version.codeSha256);
    const codeCache = this.o.codeCaches !== undefined && runtime.family === 'nodejs'
      ? await this.o.codeCaches.handle(CodeCacheStore.key(version.codeSha256, runtime.id, runtime.binary.version))
      : undefined;
    let restore = await this.o.snapshots?.(version);
    const stemEligible = this.stems?.eligible(version, runtime) === true;
    // A stem cell when there is no snapshot, or when this version starts faster from one; a snapshot otherwise.
    const stem = stemEligible && (restore === undefined || this.choose(key, restore) === 'stem') ? this.stems?.take(runtime.id) : undefined;
    if (stem !== undefined) restore = undefined;
    const env = stem ?? this.makeEnvironment(runtime, {
      version,
      codeDir,
      ...(restore === undefined ? (codeCache === undefined ? {} : { codeCache }) : { restore }),
    });
    this.all.add(env);
    const started = performance.now();
    try {
      if (stem !== undefined) await stem.specialise(version, (this.stems as StemCells).mountCode(stem, codeDir), codeCache);
      else await env.start();
      if (restore !== undefined || stem !== undefined) this.measure(key, restore !== undefined ? 'restore' : 'stem', performance.now() - started);
    } catch (e) {
      this.all.delete(env);
      if (e instanceof InitFailure) return this.initFailed(version, input, e);
      throw e;
    }
    return this.run(env, key, input, true, opts.log);
  }

  /**
   * The faster way to start a version that has both a snapshot and stem cells, from its own measurements: the
   * snapshot is tried first; a stem cell is tried only when the function's Init (as timed during the snapshot
   * build) is shorter than a restore, since a stem cell still runs Init; after two tries of each, the lower median
   * start time wins.
   */
  private choose(key: string, restore: RestoreSource): 'restore' | 'stem' {
    const m = this.startTimes.get(key);
    if (m === undefined || m.restore.length < 2) return 'restore';
    if (m.stem.length < 2) return restore.initMs !== undefined && restore.initMs < median(m.restore) ? 'stem' : 'restore';
    return median(m.stem) < median(m.restore) ? 'stem' : 'restore';
  }

  private measure(key: string, path: 'restore' | 'stem', ms: number): void {
    let m = this.startTimes.get(key);
    if (m === undefined) this.startTimes.set(key, (m = { restore: [], stem: [] }));
    m[path].push(ms);
    if (m[path].length > 9) m[path].shift();
  }

  private makeEnvironment(runtime: RuntimeDef, extra: { version?: VersionRecord; codeDir?: string; codeCache?: CodeCacheHandle; onStopped?: () => void; restore?: RestoreSource }): Environment {
    const env: Environment = new Environment({
      runtime,
      driver: this.o.driver,
      rapi: this.o.rapi,
      socketDir: this.o.socketDir,
      region: this.o.region,
      logger: this.o.logger,
      // Lines written outside an invocation belong to the environment's function (none yet for a stem cell).
      onStrayLog: (entries) => {
        if (!env.isStem) this.o.logs.append(env.version.functionName, env.version.version, entries);
      },
      ...(this.o.initTimeoutMs === undefined ? {} : { initTimeoutMs: this.o.initTimeoutMs }),
      ...extra,
    });
    return env;
  }

  /** Keep stem cells ready for these runtimes (and for any Node runtime once it has a cold start). */
  async enableStemCells(warm: readonly string[]): Promise<boolean> {
    if (this.o.driver.name !== 'namespaces') return false;
    this.stems = await StemCells.create({
      make: (runtime, onStopped) => this.makeEnvironment(runtime, { onStopped }),
      runtimes: runtimeTable(),
      logger: this.o.logger,
      warm,
    });
    return this.stems !== undefined;
  }

  private async run(env: Environment, key: string, input: InvokeInput, cold: boolean, log: boolean): Promise<PoolOutcome> {
    let early: ((r: { payload: Buffer; functionError?: 'Unhandled' }) => void) | undefined;
    let answeredEarly = false;
    const answered = log ? undefined : new Promise<{ payload: Buffer; functionError?: 'Unhandled' }>((resolve) => {
      early = (r) => {
        // Answered, not yet complete: a request arriving now may wait a moment for this environment.
        answeredEarly = true;
        this.finishing.set(key, (this.finishing.get(key) ?? 0) + 1);
        resolve(r);
      };
    });
    const done = env.invoke(input, { cold, ...(early === undefined ? {} : { onResponse: early }) }).then((out) => {
      if (answeredEarly) this.finishing.set(key, (this.finishing.get(key) ?? 1) - 1);
      this.finished(env, key, out);
      return out;
    });
    if (answered === undefined) return { ...(await done), cold };
    const first = await Promise.race([answered, done]);
    const full = 'log' in first ? first : undefined;
    return {
      payload: first.payload,
      ...(first.functionError === undefined ? {} : { functionError: first.functionError }),
      log: full?.log ?? [],
      durationMs: full?.durationMs ?? 0,
      fatal: full?.fatal ?? false,
      cold,
    };
  }

  /** An invocation is complete: store its log and give the environment back (or drop it). */
  private finished(env: Environment, key: string, out: InvokeOutcome): void {
    this.o.logs.append(env.version.functionName, env.version.version, out.log);
    if (out.fatal || env.state !== 'idle') {
      this.all.delete(env);
    } else if (this.retired.has(key) || this.closed) {
      this.all.delete(env);
      void env.stop();
    } else {
      const waiter = this.waiters.get(key)?.shift();
      if (waiter !== undefined) {
        waiter(env);
        return;
      }
      let list = this.idle.get(key);
      if (list === undefined) this.idle.set(key, (list = []));
      list.push(env);
    }
  }

  /**
   * An environment of this version that has answered its invocation and is about to be idle: a client that
   * sends its next request the moment it has a response should get the same warm environment, not a cold one.
   * Waits a few milliseconds at most.
   */
  private finishingEnvironment(key: string): Promise<Environment | undefined> | undefined {
    if ((this.finishing.get(key) ?? 0) === 0) return undefined;
    return new Promise((resolve) => {
      let list = this.waiters.get(key);
      if (list === undefined) this.waiters.set(key, (list = []));
      const waiter = (env: Environment | undefined): void => {
        clearTimeout(timer);
        resolve(env);
      };
      const timer = setTimeout(() => {
        const l = this.waiters.get(key);
        const i = l?.indexOf(waiter) ?? -1;
        if (i >= 0) l?.splice(i, 1);
        resolve(undefined);
      }, 25);
      list.push(waiter);
    });
  }

  /** Lambda's answer when Init fails on demand: the invocation fails with the init error. */
  private initFailed(version: VersionRecord, input: InvokeInput, f: InitFailure): PoolOutcome {
    const id = input.requestId;
    const now = Date.now();
    const log: LogEntry[] = [
      ...f.log,
      { requestId: null, timestamp: now, message: `INIT_REPORT Init Duration: ${(f.initDurationMs ?? 0).toFixed(2)} ms\tPhase: init\tStatus: error\tError Type: ${f.errorType}` },
      { requestId: id, timestamp: now, message: startLine(id, version.version) },
      { requestId: id, timestamp: now, message: endLine(id) },
      { requestId: id, timestamp: now, message: reportLine({ requestId: id, durationMs: f.initDurationMs ?? 0, memorySizeMb: version.config.memoryMb, maxMemoryUsedMb: 0, status: 'error' }) },
    ];
    this.o.logs.append(version.functionName, version.version, log);
    return { payload: f.payload, functionError: 'Unhandled', log, durationMs: f.initDurationMs ?? 0, fatal: true, cold: true };
  }

  private async makeRoom(memoryBytes: number): Promise<void> {
    for (;;) {
      const used = [...this.all].reduce((s, e) => s + e.version.config.memoryMb * 1024 * 1024, 0);
      if (this.all.size < this.o.maxEnvironments && used + memoryBytes <= this.o.maxMemoryBytes) return;
      const victim = this.oldestIdle();
      if (victim === undefined) {
        throw new ThawError('TooManyRequests', 'Rate Exceeded.', { Reason: 'ConcurrentInvocationLimitExceeded' });
      }
      await this.evict(victim);
    }
  }

  private oldestIdle(): Environment | undefined {
    let best: Environment | undefined;
    for (const list of this.idle.values()) {
      const e = list[0];
      if (e !== undefined && (best === undefined || e.lastUsed < best.lastUsed)) best = e;
    }
    return best;
  }

  private async evict(env: Environment): Promise<void> {
    const key = keyOf(env.version);
    const list = this.idle.get(key);
    if (list !== undefined) {
      const i = list.indexOf(env);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.idle.delete(key);
    }
    this.all.delete(env);
    await env.stop();
  }

  private reap(): void {
    const cutoff = Date.now() - this.o.keepAliveMs;
    for (const list of this.idle.values()) {
      for (const e of [...list]) if (e.lastUsed < cutoff) void this.evict(e);
    }
  }

  /** Stop the idle environments of a function (one version, or all); busy ones stop when they finish. */
  async drain(functionName: string, version?: string): Promise<number> {
    const victims: Environment[] = [];
    for (const [key, list] of this.idle) {
      const [fn, v] = key.split('\u0000');
      if (fn === functionName && (version === undefined || v === version)) victims.push(...list);
    }
    await Promise.all(victims.map((e) => this.evict(e)));
    return victims.length;
  }

  /** A version changed or was deleted: its environments must not serve again. */
  retire(functionName: string, version: string): void {
    for (const env of this.all) {
      if (env.version.functionName === functionName && env.version.version === version) this.retired.add(keyOf(env.version));
    }
    void this.drain(functionName, version);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.reaper);
    await this.stems?.close();
    this.idle.clear();
    await Promise.all([...this.all].map((e) => e.stop()));
    this.all.clear();
  }
}
