import { createHash } from 'node:crypto';
import type { Logger } from '../util/log.js';
import { ThawError } from '../util/errors.js';
import type { SandboxDriver } from '../sandbox/driver.js';
import type { RuntimeApiServer } from '../sandbox/runtime-api.js';
import type { VersionRecord } from '../control/model.js';
import type { LogSink } from '../logs/writer.js';
import { TailRing } from '../logs/tail.js';
import { endLine, reportLine, startLine } from '../logs/format.js';
import { Environment, InitFailure, type EnvironmentOptions, type InvokeInput, type InvokeOutcome, type RestoreSource } from './environment.js';
import { runtimeTable, type RuntimeDef } from './runtimes.js';
import { StemCells } from './stems.js';
import type { Metrics } from '../util/metrics.js';
import { CodeCacheStore, type CodeCacheHandle } from './code-cache.js';
import { CodeCacheProducer } from './code-cache-producer.js';
import { FixedKeepAlive, type KeepAlivePolicy } from './keepalive.js';
import { KeepAliveSchedule } from './keepalive-schedule.js';

export interface PoolOptions {
  readonly driver: SandboxDriver;
  readonly rapi: RuntimeApiServer;
  readonly logs: LogSink;
  /** Host directory of a code package, by its hex SHA-256 (materialised from the store when needed). */
  readonly codeDir: (sha256: string) => string | Promise<string>;
  readonly socketDir: string;
  readonly region: string;
  readonly logger: Logger;
  /** How long an idle environment is kept (the keep-alive policy's fallback). */
  readonly keepAliveMs: number;
  /** Keep-alive and pre-warm per version; a fixed keep-alive of keepAliveMs when absent. */
  readonly keepAlivePolicy?: KeepAlivePolicy;
  /** A pre-warm starts this long before the invocation it expects (default 2 s). */
  readonly prewarmLeadMs?: number;
  /** Cap on environments (all states) and on the sum of their memory sizes. */
  readonly maxEnvironments: number;
  readonly maxMemoryBytes: number;
  readonly initTimeoutMs?: number;
  /** pids.max of each environment (see environmentPids). */
  readonly pidsPerEnvironment?: number;
  /** Freeze an idle environment this long after it asks for its next event (default 50 ms; negative: never). */
  readonly freezeIdleAfterMs?: number;
  /** Post-init code caches; none when absent. */
  readonly codeCaches?: CodeCacheStore;
  /** Host directory to mount at /opt for a version with layers (merged in order). */
  readonly optDir?: (version: VersionRecord) => Promise<string | undefined>;
  /** The SnapStart snapshot to restore a version from, if it has a usable one. */
  readonly snapshots?: (version: VersionRecord) => Promise<RestoreSource | undefined>;
  /** Where invocations, cold starts and their paths are counted. */
  readonly metrics?: Metrics;
  /** How long a request waits for room on a full worker before it is throttled (default 10 s). */
  readonly capacityWaitMs?: number;
  /** Called first on a cold start of a version (the store prefetches what it will read, in recorded order). */
  readonly beforeColdStart?: (version: VersionRecord) => void;
}

export interface PoolOutcome extends InvokeOutcome {
  readonly cold: boolean;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  if (s.length === 0) return Number.POSITIVE_INFINITY;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};


/** Where the logs of an environment nobody reads go (the trusted code-cache producer): its output is dropped unread. */
const DISCARD_LOGS: LogSink = { write: () => undefined, admit: () => false };
/** Every this many choices between restore and stem, the slower path is tried again (see Pool.choose). */
const EXPLORE_EVERY = 8;

/**
 * What a code cache is valid for: the code, and the layers at /opt (V8 accepts a cache entry for any source of
 * the same length, so a layer's module must never meet the cache made with another layer's).
 */
const codeIdentity = (codeSha256: string, optDir: string | undefined): string =>
  optDir === undefined ? codeSha256 : `${codeSha256}-${createHash('sha256').update(optDir).digest('hex').slice(0, 16)}`;

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
  /** Environments to stop once their current invocation completes (drained while busy). */
  private readonly draining = new Set<Environment>();
  private readonly reaper: NodeJS.Timeout;
  private closed = false;
  private stems: StemCells | undefined;
  /** Invocations answered but not yet complete, per version key; and requests waiting for one of them. */
  private readonly finishing = new Map<string, number>();
  private readonly waiters = new Map<string, ((env: Environment | undefined) => void)[]>();
  /** Recent start times (ms) per version and start path, for choosing the faster path. */
  private readonly startTimes = new Map<string, { restore: number[]; stem: number[]; choices: number }>();
  /** Environments being placed: counted against the caps before they are in `all`. */
  private readonly placing = { count: 0, bytes: 0 };
  /** Requests waiting for room on a full worker; told whenever an environment goes idle or away. */
  private capacityWaiters: (() => void)[] = [];
  /** Provisioned environments (told when lost), and the idle ones per version key: leased before any other. */
  private readonly provisioned = new Map<Environment, () => void>();
  private readonly provisionedIdle = new Map<string, Environment[]>();
  private readonly keepAlive: KeepAliveSchedule;
  private readonly producer: CodeCacheProducer;

  constructor(private readonly o: PoolOptions) {
    this.producer = new CodeCacheProducer({
      // Its Init lines are not the function's: the version's own Init runs in the environments that serve it.
      make: (p, sink) => this.makeEnvironment(p.runtime, { version: p.version, codeDir: p.codeDir, ...(p.optDir === undefined ? {} : { optDir: p.optDir }), produceCodeCache: sink, logs: DISCARD_LOGS }),
      hasRoom: (bytes) => this.hasRoom(bytes),
      logger: o.logger,
    });
    this.keepAlive = new KeepAliveSchedule({
      policy: o.keepAlivePolicy ?? new FixedKeepAlive(o.keepAliveMs),
      fallbackKeepAliveMs: o.keepAliveMs,
      leadMs: o.prewarmLeadMs ?? 2000,
      prewarm: (version, readyAtMs, keepAliveMs) => void this.prewarm(version, readyAtMs, keepAliveMs),
    });
    this.reaper = setInterval(() => this.reap(), Math.min(30_000, Math.max(250, Math.floor(this.keepAlive.reapIntervalMs / 4))));
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
    this.keepAlive.arrived(key);
    const runtime = version.config.runtime === null ? undefined : runtimeTable().get(version.config.runtime);
    if (runtime === undefined) throw new ThawError('InvalidRuntime', `The runtime parameter of ${version.config.runtime ?? 'null'} is not supported on this worker.`);
    // Warm first (provisioned environments before the others); on a full worker, wait a little for room.
    const deadline = Date.now() + (this.o.capacityWaitMs ?? 10_000);
    for (;;) {
      const warm = this.takeProvisioned(key) ?? this.idle.get(key)?.pop() ?? (await this.finishingEnvironment(key));
      if (warm !== undefined) return this.run(warm, key, input, false, opts.log);
      if (await this.reserveRoom(version.config.memoryMb * 1024 * 1024, deadline)) break;
    }
    let env: Environment;
    let restore: RestoreSource | undefined;
    let stem: Environment | undefined;
    let codeCache: CodeCacheHandle | undefined;
    let codeDir: string;
    let cell: Environment | undefined;
    let optDir: string | undefined;
    try {
      this.o.beforeColdStart?.(version);
      codeDir = await this.o.codeDir(version.codeSha256);
      optDir = version.config.layers.length === 0 ? undefined : await this.o.optDir?.(version);
      codeCache = await this.codeCacheFor(version, runtime, optDir);
      restore = await this.o.snapshots?.(version);
      const stemEligible = this.stems?.eligible(version, runtime) === true;
      // A stem cell when there is no snapshot, or when this version starts faster from one; a snapshot otherwise.
      stem = stemEligible && (restore === undefined || this.choose(key, restore) === 'stem') ? this.stems?.take('stem', runtime.id) : undefined;
      if (stem !== undefined) restore = undefined;
      // A snapshot is restored into a waiting restore cell when there is one: the sandbox is already built.
      cell = restore !== undefined && this.stems?.restorable(version, runtime) === true ? this.stems.take('restore', runtime.id) : undefined;
      env = stem ?? cell ?? this.makeEnvironment(runtime, {
        version,
        codeDir,
        ...(optDir === undefined ? {} : { optDir }),
        ...(restore === undefined ? (codeCache === undefined ? {} : { codeCache }) : { restore }),
      });
      this.all.add(env);
    } finally {
      this.placed(version.config.memoryMb * 1024 * 1024);
    }
    const started = performance.now();
    try {
      if (stem !== undefined) await stem.specialise(version, (this.stems as StemCells).mountCode(stem, codeDir, optDir), codeCache);
      else if (cell !== undefined && restore !== undefined) await cell.restoreInCell(version, restore, (this.stems as StemCells).mountRestore(cell, codeDir, restore.dir, optDir));
      else await env.start();
      const ms = performance.now() - started;
      if (restore !== undefined || stem !== undefined) this.measure(key, restore !== undefined ? 'restore' : 'stem', ms);
      this.o.metrics?.coldStart(version.functionName, env.startPathName(), ms);
    } catch (e) {
      this.all.delete(env);
      this.signalCapacity();
      if (e instanceof InitFailure) return this.initFailed(version, input, e);
      throw e;
    }
    const out = await this.run(env, key, input, true, opts.log);
    if (restore === undefined && codeCache !== undefined && codeCache.get() === undefined) this.produceCodeCache(version, runtime, codeDir, optDir);
    return out;
  }

  /** Start the trusted step that makes this version's code cache, unless one exists or is being made. */
  private produceCodeCache(version: VersionRecord, runtime: RuntimeDef, codeDir: string, optDir: string | undefined): void {
    const production = this.o.codeCaches?.claim(this.codeCacheKey(version, runtime, optDir));
    if (production === undefined || this.closed) return;
    void this.producer.produce({ version, runtime, codeDir, ...(optDir === undefined ? {} : { optDir }), production });
  }

  private codeCacheKey(version: VersionRecord, runtime: RuntimeDef, optDir: string | undefined): string {
    return CodeCacheStore.key({
      functionName: version.functionName,
      version: version.version,
      revisionId: version.revisionId,
      codeIdentity: codeIdentity(version.codeSha256, optDir),
      codeSha256: version.codeSha256,
      runtimeId: runtime.id,
      binaryVersion: runtime.binary.version,
    });
  }

  private hasRoom(memoryBytes: number): boolean {
    const used = [...this.all].reduce((s, e) => s + e.version.config.memoryMb * 1024 * 1024, 0) + this.placing.bytes;
    return this.all.size + this.placing.count + this.producer.size < this.o.maxEnvironments && used + memoryBytes <= this.o.maxMemoryBytes;
  }

  private async codeCacheFor(version: VersionRecord, runtime: RuntimeDef, optDir: string | undefined): Promise<CodeCacheHandle | undefined> {
    return this.o.codeCaches !== undefined && runtime.family === 'nodejs'
      ? await this.o.codeCaches.handle(this.codeCacheKey(version, runtime, optDir))
      : undefined;
  }

  /**
   * Start an environment of `version` ahead of traffic (provisioned concurrency): restored from the version's
   * snapshot when it has one, else a normal Init. It is leased before any other environment of the version, is
   * never reaped for idleness, and `onLost` is told once if it stops for any reason other than unprovision().
   * Rejects with the InitFailure when Init fails, or TooManyRequests when the worker stays full.
   */
  async provision(version: VersionRecord, onLost: () => void): Promise<Environment> {
    if (this.closed) throw new ThawError('ServiceUnavailable', 'The worker is shutting down.');
    const runtime = version.config.runtime === null ? undefined : runtimeTable().get(version.config.runtime);
    if (runtime === undefined) throw new ThawError('InvalidRuntime', `The runtime parameter of ${version.config.runtime ?? 'null'} is not supported on this worker.`);
    const bytes = version.config.memoryMb * 1024 * 1024;
    const deadline = Date.now() + (this.o.capacityWaitMs ?? 10_000);
    while (!(await this.reserveRoom(bytes, deadline)));
    let env: Environment;
    let restore: RestoreSource | undefined;
    let optDir: string | undefined;
    let codeCache: CodeCacheHandle | undefined;
    let codeDir: string;
    try {
      restore = await this.o.snapshots?.(version);
      optDir = version.config.layers.length === 0 ? undefined : await this.o.optDir?.(version);
      codeCache = await this.codeCacheFor(version, runtime, optDir);
      codeDir = await this.o.codeDir(version.codeSha256);
      const made: Environment = this.makeEnvironment(runtime, {
        version,
        codeDir,
        ...(optDir === undefined ? {} : { optDir }),
        provisioned: true,
        onStopped: () => this.lost(made),
        ...(restore === undefined ? (codeCache === undefined ? {} : { codeCache }) : { restore }),
      });
      env = made;
      this.all.add(env);
    } finally {
      this.placed(bytes);
    }
    try {
      await env.start();
    } catch (e) {
      this.all.delete(env);
      this.signalCapacity();
      throw e;
    }
    if (this.closed || env.state !== 'idle') {
      this.all.delete(env);
      void env.stop();
      throw new ThawError('ServiceUnavailable', 'The environment stopped before it was ready.');
    }
    if (restore === undefined && codeCache !== undefined && codeCache.get() === undefined) this.produceCodeCache(version, runtime, codeDir, optDir);
    this.provisioned.set(env, onLost);
    const key = keyOf(version);
    let list = this.provisionedIdle.get(key);
    if (list === undefined) this.provisionedIdle.set(key, (list = []));
    list.push(env);
    this.signalCapacity();
    return env;
  }

  /** No longer provisioned: stopped when idle, else when its invocation is over. */
  unprovision(env: Environment): void {
    if (!this.provisioned.delete(env)) return;
    const key = keyOf(env.version);
    const list = this.provisionedIdle.get(key);
    const i = list?.indexOf(env) ?? -1;
    if (list !== undefined && i >= 0) {
      list.splice(i, 1);
      if (list.length === 0) this.provisionedIdle.delete(key);
      this.all.delete(env);
      this.signalCapacity();
      void env.stop();
    }
  }

  /** A provisioned environment stopped (crash, timeout, out of memory, shutdown). */
  private lost(env: Environment): void {
    const onLost = this.provisioned.get(env);
    if (onLost === undefined) return;
    this.provisioned.delete(env);
    const key = keyOf(env.version);
    const list = this.provisionedIdle.get(key);
    const i = list?.indexOf(env) ?? -1;
    if (list !== undefined && i >= 0) list.splice(i, 1);
    if (list?.length === 0) this.provisionedIdle.delete(key);
    this.all.delete(env);
    this.signalCapacity();
    if (!this.closed) onLost();
  }

  private takeProvisioned(key: string): Environment | undefined {
    const list = this.provisionedIdle.get(key);
    while (list !== undefined && list.length > 0) {
      const env = list.shift() as Environment;
      if (env.state === 'idle') return env;
    }
    return undefined;
  }

  /**
   * The faster way to start a version that has both a snapshot and stem cells, from its own measurements: the
   * snapshot is tried first; a stem cell is tried only when the function's Init (as timed during the snapshot
   * build) is shorter than a restore, since a stem cell still runs Init; after two tries of each, the lower median
   * start time wins, and every EXPLORE_EVERY-th choice takes the other path to keep its measurements current.
   */
  private choose(key: string, restore: RestoreSource): 'restore' | 'stem' {
    const m = this.startTimes.get(key);
    if (m === undefined || m.restore.length < 2) return 'restore';
    if (m.stem.length < 2) return restore.initMs !== undefined && restore.initMs < median(m.restore) ? 'stem' : 'restore';
    const faster = median(m.stem) < median(m.restore) ? 'stem' : 'restore';
    // Now and then the other path again: a measurement taken while the machine was busy must not decide for good.
    m.choices++;
    if (m.choices % EXPLORE_EVERY === 0) return faster === 'stem' ? 'restore' : 'stem';
    return faster;
  }

  private measure(key: string, path: 'restore' | 'stem', ms: number): void {
    let m = this.startTimes.get(key);
    if (m === undefined) this.startTimes.set(key, (m = { restore: [], stem: [], choices: 0 }));
    m[path].push(ms);
    if (m[path].length > 9) m[path].shift();
  }

  private makeEnvironment(runtime: RuntimeDef, extra: Partial<Pick<EnvironmentOptions, 'version' | 'codeDir' | 'optDir' | 'codeCache' | 'produceCodeCache' | 'onStopped' | 'logs' | 'restore' | 'provisioned'>>): Environment {
    const { logs, ...rest } = extra;
    const env: Environment = new Environment({
      runtime,
      driver: this.o.driver,
      rapi: this.o.rapi,
      socketDir: this.o.socketDir,
      region: this.o.region,
      logger: this.o.logger,
      logs: logs ?? this.o.logs,
      ...(this.o.initTimeoutMs === undefined ? {} : { initTimeoutMs: this.o.initTimeoutMs }),
      ...(this.o.pidsPerEnvironment === undefined ? {} : { pids: this.o.pidsPerEnvironment }),
      ...(this.o.freezeIdleAfterMs === undefined ? {} : { freezeIdleAfterMs: this.o.freezeIdleAfterMs }),
      ...rest,
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
      canRestore: this.o.driver.canDefer,
    });
    return this.stems !== undefined;
  }

  /** This worker's metrics in Prometheus' text format (empty without a registry). */
  async metricsText(): Promise<{ contentType: string; body: string }> {
    return this.o.metrics === undefined ? { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '' } : this.o.metrics.text();
  }

  /** Versions some environment (not a waiting stem cell) still runs, however idle: their code is mounted. */
  versionsInUse(): VersionRecord[] {
    return [...this.all].filter((e) => !e.isStem).map((e) => e.version);
  }

  /** Environments by state, for metrics. */
  environmentStates(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const e of this.all) out[e.state] = (out[e.state] ?? 0) + 1;
    return out;
  }

  /** Pre-started cells waiting, by kind, for metrics. */
  cellsReady(): Record<string, number> {
    return this.stems === undefined ? {} : { stem: this.stems.readyCount('stem'), restore: this.stems.readyCount('restore') };
  }

  /** Get restore cells ready for a version that will be restored from a snapshot. */
  prepareRestore(version: VersionRecord): void {
    const runtime = version.config.runtime === null ? undefined : runtimeTable().get(version.config.runtime);
    if (runtime !== undefined && this.stems?.restorable(version, runtime) === true) this.stems.warm('restore', runtime.id);
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
    const m = this.o.metrics;
    if (m !== undefined) {
      const fn = env.version.functionName;
      m.invocations.inc({ function: fn, start: cold ? 'cold' : 'warm' });
      void answered?.then((r) => r.functionError !== undefined && m.functionErrors.inc({ function: fn }));
    }
    const done = env.invoke(input, { cold, ...(early === undefined ? {} : { onResponse: early }) }).then((out) => {
      if (m !== undefined && answered === undefined && out.functionError !== undefined) m.functionErrors.inc({ function: env.version.functionName });
      if (answeredEarly) this.finishing.set(key, (this.finishing.get(key) ?? 1) - 1);
      this.finished(env, key, out);
      return out;
    });
    if (answered === undefined) return { ...(await done), cold };
    const first = await Promise.race([answered, done]);
    const full = 'tail' in first ? first : undefined;
    return {
      payload: first.payload,
      ...(first.functionError === undefined ? {} : { functionError: first.functionError }),
      tail: full?.tail ?? Buffer.alloc(0),
      durationMs: full?.durationMs ?? 0,
      fatal: full?.fatal ?? false,
      cold,
    };
  }

  /** An invocation is complete (its log already went to the log sink): give the environment back (or drop it). */
  private finished(env: Environment, key: string, out: InvokeOutcome): void {
    if (out.fatal || env.state !== 'idle') {
      this.all.delete(env);
      this.draining.delete(env);
      // A provisioned environment is replaced now, not when its sandbox has finished stopping.
      this.lost(env);
    } else if (this.retired.has(key) || this.closed || this.draining.delete(env)) {
      this.all.delete(env);
      void env.stop();
    } else {
      const waiter = this.waiters.get(key)?.shift();
      if (waiter !== undefined) {
        waiter(env);
        return;
      }
      if (!this.provisioned.has(env) && this.keepAlive.idle(env, key) === 'unload') {
        // The policy expects no invocation for a while: stop now, a pre-warm is scheduled before the next one.
        this.all.delete(env);
        void env.stop();
        this.signalCapacity();
        return;
      }
      const target = this.provisioned.has(env) ? this.provisionedIdle : this.idle;
      let list = target.get(key);
      if (list === undefined) target.set(key, (list = []));
      list.push(env);
    }
    this.signalCapacity();
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
    this.o.metrics?.initFailures.inc({ function: version.functionName, type: f.errorType });
    this.o.metrics?.functionErrors.inc({ function: version.functionName });
    const now = Date.now();
    const tail = f.tail ?? new TailRing();
    const line = (requestId: string | null, message: string): void => {
      tail.line(message);
      this.o.logs.write(version.functionName, version.version, { requestId, timestamp: now, message }, true);
    };
    line(null, `INIT_REPORT Init Duration: ${(f.initDurationMs ?? 0).toFixed(2)} ms\tPhase: init\tStatus: error\tError Type: ${f.errorType}`);
    line(id, startLine(id, version.version));
    line(id, endLine(id));
    line(id, reportLine({ requestId: id, durationMs: f.initDurationMs ?? 0, memorySizeMb: version.config.memoryMb, maxMemoryUsedMb: 0, status: 'error' }));
    return { payload: f.payload, functionError: 'Unhandled', tail: tail.bytes(), durationMs: f.initDurationMs ?? 0, fatal: true, cold: true };
  }

  /**
   * Room for one more environment of `memoryBytes`, counted at once (so that a burst cannot overshoot the caps),
   * evicting the least recently used idle environments when needed: true when reserved (release it with placed()).
   * On a worker full of busy environments, waits until an environment goes idle or away and answers false, so
   * that the caller can look for a warm one again; TooManyRequests once `deadline` has passed.
   */
  private async reserveRoom(memoryBytes: number, deadline: number): Promise<boolean> {
    for (;;) {
      const used = [...this.all].reduce((s, e) => s + e.version.config.memoryMb * 1024 * 1024, 0) + this.placing.bytes;
      if (this.all.size + this.placing.count < this.o.maxEnvironments && used + memoryBytes <= this.o.maxMemoryBytes) {
        this.placing.count++;
        this.placing.bytes += memoryBytes;
        return true;
      }
      const victim = this.oldestIdle();
      if (victim === undefined) break;
      await this.evict(victim);
    }
    const left = deadline - Date.now();
    if (left <= 0 || this.closed) throw new ThawError('TooManyRequests', 'Rate Exceeded.', { Reason: 'ConcurrentInvocationLimitExceeded' });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.capacityWaiters = this.capacityWaiters.filter((w) => w !== wake);
        resolve();
      }, left);
      const wake = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.capacityWaiters.push(wake);
    });
    return false;
  }

  /** A reservation made by reserveRoom() is over: the environment is in `all`, or was never made. */
  private placed(memoryBytes: number): void {
    this.placing.count--;
    this.placing.bytes -= memoryBytes;
    this.signalCapacity();
  }

  private signalCapacity(): void {
    if (this.capacityWaiters.length === 0) return;
    const waiters = this.capacityWaiters;
    this.capacityWaiters = [];
    for (const w of waiters) w();
  }

  /** The environment to evict for room: a pre-warmed one that has not served yet, else the least recently used. */
  private oldestIdle(): Environment | undefined {
    let best: Environment | undefined;
    for (const list of this.idle.values()) {
      const unused = list.find((e) => this.keepAlive.isUnused(e));
      if (unused !== undefined) return unused;
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
    this.signalCapacity();
    await env.stop();
  }

  /** Stop idle environments whose keep-alive window (from the policy, per version) has ended. */
  private reap(): void {
    const now = Date.now();
    for (const list of this.idle.values()) {
      for (const e of [...list]) if (now >= this.keepAlive.deadline(e)) void this.evict(e);
    }
  }

  /**
   * Start an environment of a version ahead of the invocation the keep-alive policy expects, so that it is
   * served warm. It runs off the request path, so it leaves stem cells to on-demand cold starts; it is skipped
   * when the version already has an idle environment or the worker is full (it never evicts for a guess).
   */
  private async prewarm(version: VersionRecord, readyAtMs: number, keepAliveMs: number): Promise<void> {
    const key = keyOf(version);
    const runtime = version.config.runtime === null ? undefined : runtimeTable().get(version.config.runtime);
    if (runtime === undefined) return;
    const restore = await this.o.snapshots?.(version);
    const optDir = version.config.layers.length === 0 ? undefined : await this.o.optDir?.(version);
    const memory = version.config.memoryMb * 1024 * 1024;
    if (this.closed || this.retired.has(key) || (this.idle.get(key)?.length ?? 0) > 0) return;
    const used = [...this.all].reduce((s, e) => s + e.version.config.memoryMb * 1024 * 1024, 0) + this.placing.bytes;
    if (this.all.size + this.placing.count >= this.o.maxEnvironments || used + memory > this.o.maxMemoryBytes) return;
    const codeCache = await this.codeCacheFor(version, runtime, optDir);
    const env = this.makeEnvironment(runtime, {
      version,
      codeDir: await this.o.codeDir(version.codeSha256),
      ...(optDir === undefined ? {} : { optDir }),
      ...(restore === undefined ? (codeCache === undefined ? {} : { codeCache }) : { restore }),
    });
    this.all.add(env);
    try {
      await env.start();
    } catch (e) {
      this.all.delete(env);
      this.signalCapacity();
      if (!this.closed) this.o.logger.warn({ fn: version.functionName, version: version.version, err: e instanceof Error ? e.message : String(e) }, 'pre-warm failed');
      return;
    }
    // Init happened outside any invocation (its lines are in the function's log already): the first invocation is warm.
    if (this.closed || this.retired.has(key)) {
      this.all.delete(env);
      this.signalCapacity();
      await env.stop();
      return;
    }
    this.keepAlive.prewarmed(env, readyAtMs, keepAliveMs);
    const waiter = this.waiters.get(key)?.shift();
    if (waiter !== undefined) {
      waiter(env);
      return;
    }
    let list = this.idle.get(key);
    if (list === undefined) this.idle.set(key, (list = []));
    list.push(env);
    this.signalCapacity();
  }


  /** Stop the idle environments of a function (one version, or all); busy ones stop when they finish. */
  async drain(functionName: string, version?: string): Promise<number> {
    this.keepAlive.cancel(functionName, version);
    const victims: Environment[] = [];
    for (const [key, list] of this.idle) {
      const [fn, v] = key.split('\u0000');
      if (fn === functionName && (version === undefined || v === version)) victims.push(...list);
    }
    // Environments still running an invocation stop when it completes, so that the next invoke is cold.
    let later = 0;
    for (const e of this.all) {
      if (e.isStem || this.provisioned.has(e) || e.version.functionName !== functionName || (version !== undefined && e.version.version !== version)) continue;
      if (e.state === 'busy' || e.state === 'initializing') {
        this.draining.add(e);
        later++;
      }
    }
    await Promise.all(victims.map((e) => this.evict(e)));
    return victims.length + later;
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
    this.signalCapacity();
    this.keepAlive.close();
    await Promise.all([this.stems?.close(), this.producer.close()]);
    this.idle.clear();
    this.provisionedIdle.clear();
    await Promise.all([...this.all].map((e) => e.stop()));
    this.all.clear();
  }
}
