import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { Mount, Sandbox, SandboxDriver, SandboxLimits } from '../sandbox/driver.js';
import { RUNTIME_API_SOCKET } from '../sandbox/driver.js';
import { ACCEPTED, RAPI_ERRORS, RAPI_RUNTIME_STATES as S, invalidStateTransition, type RuntimeApiServer } from '../sandbox/runtime-api.js';
import type {
  EnvironmentPort, InvocationRequest, RuntimeApiResult, RuntimeErrorReport,
} from '../sandbox/runtime-api-types.js';
import type { VersionRecord } from '../control/model.js';
import { functionArn } from '../control/arn.js';
import type { RuntimeDef } from './runtimes.js';
import { RESTORE_ENV, restoreArgv } from '../snapshot/restore.js';
import { IdleFreezer } from './idle-freezer.js';
import { EnvironmentLog } from '../logs/environment-log.js';
import type { LogSink } from '../logs/writer.js';
import type { TailRing } from '../logs/tail.js';
import type { CodeCacheHandle } from './code-cache.js';
import type { CodeCacheSink } from './code-cache-producer.js';
import { endLine, initStartLine, reportLine, startLine } from '../logs/format.js';

/**
 * One execution environment: a sandboxed runtime process serving one function version, one invocation at a
 * time, through its own Runtime API endpoint.
 *
 *   starting ─> initializing ─> idle ⇄ busy ─> stopping ─> stopped
 *        └─> stem ─┘  (a stem cell waits, without a function, until it is specialised)
 *   any state ──> (failure) stopping
 */
export type EnvState = 'starting' | 'stem' | 'cell' | 'initializing' | 'idle' | 'busy' | 'stopping' | 'stopped';

export interface InvokeInput {
  readonly requestId: string;
  readonly payload: Buffer;
  readonly invokedFunctionArn: string;
  readonly clientContext?: string;
}

export interface InvokeOutcome {
  readonly payload: Buffer;
  /** Set when the function failed; the payload then holds {errorType, errorMessage, ...}. */
  readonly functionError?: 'Unhandled';
  /** The last 4 KB of this invocation's log, up to REPORT (LogType=Tail). */
  readonly tail: Buffer;
  readonly durationMs: number;
  /** Init Duration, on the invocation that paid for Init. */
  readonly initDurationMs?: number;
  /** The environment cannot serve again (crash, timeout, OOM). */
  readonly fatal: boolean;
}

export interface EnvironmentOptions {
  /** The function version; absent for a stem cell, which learns it when specialised. */
  readonly version?: VersionRecord;
  readonly runtime: RuntimeDef;
  /** Host directory of the code (plain starts). */
  readonly codeDir?: string;
  /** Host directory of the function's layers, mounted read-only at /opt (plain starts and restores). */
  readonly optDir?: string;
  readonly driver: SandboxDriver;
  readonly rapi: RuntimeApiServer;
  readonly socketDir: string;
  readonly region: string;
  readonly logger: Logger;
  /** Where the environment's log lines go (stored in batches, off the invoke path). */
  readonly logs: LogSink;
  readonly initTimeoutMs?: number;
  /** The sandbox's pids.max (default Lambda's 1,024; sized by the server so that all environments fit the host). */
  readonly pids?: number;
  readonly shutdownGraceMs?: number;
  /** The post-init code cache of this version (Node runtimes). */
  readonly codeCache?: CodeCacheHandle;
  /** Set only for the trusted step that produces a version's code cache: the one upload it may make goes here. */
  readonly produceCodeCache?: CodeCacheSink;
  /** Called once when the environment has stopped and released its sandbox. */
  readonly onStopped?: () => void;
  /** Start by restoring this SnapStart snapshot instead of running Init. */
  readonly restore?: RestoreSource;
  /** Initialised ahead of traffic for provisioned concurrency (AWS_LAMBDA_INITIALIZATION_TYPE, REPORT line). */
  readonly provisioned?: boolean;
  /** Freeze the sandbox this long after the runtime asks for its next event (default 50 ms; negative: never). */
  readonly freezeIdleAfterMs?: number;
}

export interface RestoreSource {
  /** Host directory holding the blob. */
  readonly dir: string;
  readonly blobFile: string;
  readonly flags: readonly string[];
  readonly nodeOptions?: string;
  /** How long the function's Init took when the snapshot was built. */
  readonly initMs?: number;
}

interface Current {
  readonly input: InvokeInput;
  readonly started: number;
  readonly initDurationMs?: number;
  response?: { payload: Buffer; functionError?: 'Unhandled' };
  fatal: boolean;
  /** Past the function's timeout before the runtime asked for the next event. */
  timedOut?: boolean;
  /** Runs until the invocation is complete (the runtime's next /next), not until it answers. */
  timer?: NodeJS.Timeout;
  finish: (o: InvokeOutcome) => void;
  /** Told as soon as the runtime has answered (before the invocation is complete), once. */
  onResponse?: (r: { payload: Buffer; functionError?: 'Unhandled' }) => void;
}


const CODE_CACHE_REFUSED: RuntimeApiResult = Object.freeze({ status: 403, errorType: 'CodeCacheRefused', errorMessage: 'This environment was not asked for a code cache' });

export class Environment implements EnvironmentPort {
  readonly id = `e${randomBytes(8).toString('hex')}`;
  state: EnvState = 'starting';
  lastUsed = Date.now();
  private sandbox?: Sandbox;
  private initStarted = 0;
  /** How this environment was started, for the log and metrics: plain, stem, code-cache, restore. */
  readonly startPath = new Set<string>();
  private initDurationMs?: number;
  private readonly log: EnvironmentLog;
  private initWaiter?: { resolve: () => void; reject: (e: InitFailure) => void };
  private initFailure?: InitFailure;
  private pendingNext?: { resolve: (r: InvocationRequest) => void; reject: (e: Error) => void };
  private queued?: InvocationRequest;
  private current?: Current;
  private exitedPromise?: Promise<void>;

  private v?: VersionRecord;
  private logStream = '';
  private address = '';
  private specializeWaiter?: { resolve: (env: Readonly<Record<string, string>>) => void; reject: (e: Error) => void };
  private stemReady?: () => void;
  private codeCacheHandle?: CodeCacheHandle;
  /** The snapshot this environment starts from, if any (given at construction, or to a restore cell). */
  private restore?: RestoreSource;
  private readonly freezer: IdleFreezer;

  constructor(private readonly o: EnvironmentOptions) {
    this.freezer = new IdleFreezer(o.freezeIdleAfterMs ?? 50);
    this.log = new EnvironmentLog(o.logs, () => (this.v === undefined ? undefined : { functionName: this.v.functionName, version: this.v.version }));
    if (o.version !== undefined) this.bind(o.version);
    if (o.codeCache !== undefined) this.codeCacheHandle = o.codeCache;
    if (o.restore !== undefined) this.restore = o.restore;
  }

  get version(): VersionRecord {
    if (this.v === undefined) throw new Error(`environment ${this.id} is a stem cell without a function`);
    return this.v;
  }

  /** True for a stem cell that has not been specialised yet. */
  get isStem(): boolean {
    return this.v === undefined;
  }

  private bind(version: VersionRecord): void {
    this.v = version;
    const d = new Date();
    this.logStream = `${d.getUTCFullYear()}/${String(d.getUTCMonth() + 1).padStart(2, '0')}/${String(d.getUTCDate()).padStart(2, '0')}/[${version.version}]${this.id.slice(1)}`;
  }

  /** The Lambda variables plus the function's own, for this environment. */
  private functionEnv(version: VersionRecord): Record<string, string> {
    const unix = this.o.driver.runtimeApiTransport === 'unix';
    return lambdaEnvironment(version, this.o.runtime, this.o.region, {
      AWS_LAMBDA_LOG_STREAM_NAME: this.logStream,
      AWS_LAMBDA_RUNTIME_API: unix ? '127.0.0.1:9001' : this.address,
      ...(this.restore === undefined ? {} : { ...RESTORE_ENV, ...(this.restore.nodeOptions === undefined ? {} : { NODE_OPTIONS: this.restore.nodeOptions }) }),
      // Also when restored from a snapshot: the environment was initialised for provisioned concurrency.
      ...(this.o.provisioned === true ? { AWS_LAMBDA_INITIALIZATION_TYPE: 'provisioned-concurrency' } : {}),
    });
  }

  private limitsFor(memoryMb: number, ephemeralMb: number): SandboxLimits {
    return {
      memoryBytes: memoryMb * 1024 * 1024,
      pids: this.o.pids ?? 1024,
      // Lambda gives one full vCPU at 1769 MB, proportionally less or more.
      cpuShares: Math.max(2, Math.round((memoryMb / 1769) * 1024)),
      tmpBytes: ephemeralMb * 1024 * 1024,
    };
  }

  /**
   * Start the sandbox and run Init. Resolves when the runtime first asks for an invocation; rejects with an
   * InitFailure (carrying Lambda's error payload) when Init fails, crashes or takes longer than the init timeout.
   */
  async start(): Promise<void> {
    const { o } = this;
    const version = this.version;
    const c = version.config;
    const unix = o.driver.runtimeApiTransport === 'unix';
    await this.attach();
    const mounts = [{ host: o.codeDir ?? '', sandbox: '/var/task' }, ...(o.optDir === undefined ? [] : [{ host: o.optDir, sandbox: '/opt' }]), ...o.runtime.mounts];
    const env = this.functionEnv(version);
    // AWS_LAMBDA_EXEC_WRAPPER: Lambda runs the wrapper with the runtime's command line as its arguments. The
    // wrapper may start anything, so it also gets the Runtime API on TCP.
    const wrapper = o.runtime.family === 'provided' || this.restore !== undefined ? undefined : c.env.AWS_LAMBDA_EXEC_WRAPPER;
    let argv = o.runtime.argv(unix ? RUNTIME_API_SOCKET : undefined);
    if (this.restore !== undefined) {
      mounts.push({ host: this.restore.dir, sandbox: '/var/snapshot' });
      argv = this.restoreArgv(this.restore, mounts);
    }
    this.beginInit();
    const initDone = this.initPromise();
    await this.launch({
      mounts,
      argv: wrapper === undefined ? argv : [wrapper, ...argv],
      env,
      limits: this.limitsFor(c.memoryMb, c.ephemeralMb),
      tcp: o.runtime.tcpRuntimeApi || wrapper !== undefined,
    });
    await this.awaitInit(initDone);
  }

  private restoreArgv(restore: RestoreSource, mounts: readonly Mount[]): string[] {
    const { o } = this;
    this.startPath.add('restore');
    return restoreArgv({
      nodeBinary: o.driver.resolve('/var/lang/bin/node', mounts),
      blobPath: o.driver.resolve(`/var/snapshot/${restore.blobFile}`, mounts),
      flags: restore.flags,
      ...(o.driver.runtimeApiTransport === 'unix' ? { runtimeApiSocket: RUNTIME_API_SOCKET } : {}),
    });
  }

  /**
   * Start a restore cell: a sandbox built ahead of demand (namespaces, cgroup, the runtime's mounts, empty
   * /var/task and /var/snapshot on a shared mount under `cellDir`) whose init waits for the process to run.
   * Restoring a snapshot into it then skips the sandbox start. Drivers with canDefer only.
   */
  async startCell(cellDir: string, limits: { memoryMb: number; ephemeralMb: number }): Promise<void> {
    const { o } = this;
    await this.attach();
    await this.launch({
      mounts: [
        { host: join(cellDir, 'task'), sandbox: '/var/task' },
        { host: join(cellDir, 'opt'), sandbox: '/opt' },
        { host: join(cellDir, 'snapshot'), sandbox: '/var/snapshot' },
        ...o.runtime.mounts,
      ],
      argv: [],
      env: {},
      limits: this.limitsFor(limits.memoryMb, limits.ephemeralMb),
      tcp: false,
      deferred: true,
    });
    if (this.state === 'starting') this.state = 'cell';
  }

  /**
   * Restore `version` from its snapshot in a waiting restore cell: `mount` makes the code and the snapshot
   * visible in the cell, the function's limits apply, and the restored process starts. Same outcome as start().
   */
  async restoreInCell(version: VersionRecord, restore: RestoreSource, mount: () => Promise<void>): Promise<void> {
    const sandbox = this.sandbox;
    if (this.state !== 'cell' || sandbox?.launch === undefined) throw new Error(`environment ${this.id} is ${this.state}, not a waiting restore cell`);
    this.bind(version);
    this.restore = restore;
    const argv = this.restoreArgv(restore, []);
    this.startPath.add('cell');
    this.beginInit();
    const initDone = this.initPromise();
    const c = version.config;
    try {
      await Promise.all([mount(), sandbox.updateLimits?.(this.limitsFor(c.memoryMb, c.ephemeralMb))]);
      await sandbox.launch(argv, this.functionEnv(version));
    } catch (e) {
      this.failInit(new InitFailure('Runtime.Unknown', `Failed to start the execution environment: ${(e as Error).message}`));
    }
    await this.awaitInit(initDone);
  }

  /**
   * Start a stem cell: the runtime boots inside its sandbox with an empty /var/task (`stemDir`, on a shared
   * mount) and waits to be specialised. Resolves once the runtime is waiting. `stemOptDir`, on the same shared
   * mount, is its /opt: empty until the function's layers are mounted onto it.
   */
  async startStem(stemDir: string, limits: { memoryMb: number; ephemeralMb: number }, stemOptDir?: string): Promise<void> {
    const { o } = this;
    const unix = o.driver.runtimeApiTransport === 'unix';
    await this.attach();
    const mounts = [{ host: stemDir, sandbox: '/var/task' }, ...(stemOptDir === undefined ? [] : [{ host: stemOptDir, sandbox: '/opt' }]), ...o.runtime.mounts];
    const env: Record<string, string> = {
      ...o.runtime.env,
      AWS_LAMBDA_RUNTIME_API: unix ? '127.0.0.1:9001' : this.address,
      LAMBDA_TASK_ROOT: '/var/task',
      LAMBDA_RUNTIME_DIR: '/var/runtime',
      TZ: ':UTC',
      LANG: 'en_US.UTF-8',
    };
    const ready = new Promise<void>((resolve) => { this.stemReady = resolve; });
    await this.launch({
      mounts,
      argv: [...o.runtime.argv(unix ? RUNTIME_API_SOCKET : undefined), '--stem'],
      env,
      limits: this.limitsFor(limits.memoryMb, limits.ephemeralMb),
      tcp: false,
    });
    const exited = this.exitedPromise?.then(() => { throw new Error('stem cell exited before it was ready'); });
    await Promise.race([ready, exited]);
  }

  /**
   * Turn a waiting stem cell into an environment of `version`: its code is mounted at /var/task (by
   * `mountCode`), its limits applied, and its Init runs. Same outcome as start().
   */
  async specialise(version: VersionRecord, mountCode: () => Promise<void>, codeCache: CodeCacheHandle | undefined): Promise<void> {
    if (this.state !== 'stem' || this.specializeWaiter === undefined) throw new Error(`environment ${this.id} is ${this.state}, not a waiting stem cell`);
    this.bind(version);
    if (codeCache !== undefined) this.codeCacheHandle = codeCache;
    this.startPath.add('stem');
    this.beginInit();
    const initDone = this.initPromise();
    const c = version.config;
    try {
      await Promise.all([mountCode(), this.sandbox?.updateLimits?.(this.limitsFor(c.memoryMb, c.ephemeralMb))]);
    } catch (e) {
      this.failInit(new InitFailure('Runtime.Unknown', `Failed to specialise the execution environment: ${(e as Error).message}`));
    }
    const w = this.specializeWaiter;
    this.specializeWaiter = undefined;
    w?.resolve(this.functionEnv(version));
    await this.awaitInit(initDone);
  }

  private async attach(): Promise<void> {
    const { o } = this;
    const unix = o.driver.runtimeApiTransport === 'unix';
    const socketPath = join(o.socketDir, `${this.id}.sock`);
    this.address = (await o.rapi.attach(this.id, this, unix ? { transport: 'unix', socketPath } : { transport: 'tcp' })).address;
  }

  private beginInit(): void {
    this.initStarted = performance.now();
    this.state = 'initializing';
    this.log.platform(initStartLine(this.o.runtime.id, this.o.runtime.binary.version));
  }

  private initPromise(): Promise<void> {
    return new Promise<void>((resolve, reject) => { this.initWaiter = { resolve, reject }; });
  }

  private async launch(l: { mounts: Mount[]; argv: string[]; env: Record<string, string>; limits: SandboxLimits; tcp: boolean; deferred?: boolean }): Promise<void> {
    const { o } = this;
    const unix = o.driver.runtimeApiTransport === 'unix';
    try {
      this.sandbox = await o.driver.start({
        id: this.id,
        mounts: l.mounts,
        argv: l.argv,
        env: l.env,
        cwd: '/var/task',
        limits: l.limits,
        ...(unix ? { runtimeApiSocket: join(o.socketDir, `${this.id}.sock`) } : {}),
        ...(l.tcp ? { runtimeApiTcp: true } : {}),
        ...(l.deferred === true ? { deferred: true } : {}),
      });
    } catch (e) {
      await this.destroy();
      throw new InitFailure('Runtime.Unknown', `Failed to start the execution environment: ${(e as Error).message}`);
    }
    this.log.capture([this.sandbox.stdout, this.sandbox.stderr]);
    this.exitedPromise = this.sandbox.exited.then((x) => this.onExit(x.code, x.signal, x.oomKilled));
  }

  private async awaitInit(initDone: Promise<void>): Promise<void> {
    const limit = this.o.initTimeoutMs ?? 10_000;
    const timer = setTimeout(() => this.failInit(new InitFailure('Sandbox.Timedout', `INIT_REPORT Init Duration: ${limit.toFixed(2)} ms Phase: init Status: timeout`)), limit);
    try {
      await initDone;
    } catch (e) {
      await this.stop();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The stem cell's runtime waits here to learn its function. */
  specialize(signal: AbortSignal): Promise<Readonly<Record<string, string>>> {
    if (this.state !== 'starting' || this.v !== undefined) return Promise.reject(invalidStateTransition(S.Ready, S.Started));
    this.state = 'stem';
    return new Promise((resolve, reject) => {
      this.specializeWaiter = { resolve, reject };
      signal.addEventListener('abort', () => {
        if (this.specializeWaiter?.resolve === resolve) this.specializeWaiter = undefined;
        reject(new Error('runtime disconnected'));
      }, { once: true });
      this.stemReady?.();
    });
  }

  /** Run one invocation. The environment must be idle. */
  invoke(input: InvokeInput, opts: { cold: boolean; onResponse?: (r: { payload: Buffer; functionError?: 'Unhandled' }) => void }): Promise<InvokeOutcome> {
    if (this.state !== 'idle') throw new Error(`environment ${this.id} is ${this.state}, not idle`);
    this.state = 'busy';
    this.lastUsed = Date.now();
    const timeoutMs = this.version.config.timeoutSec * 1000;
    const req: InvocationRequest = {
      requestId: input.requestId,
      payload: input.payload,
      deadlineMs: Date.now() + timeoutMs,
      invokedFunctionArn: input.invokedFunctionArn,
      traceId: `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=0;Lineage=1:${randomBytes(4).toString('hex')}:0`,
      ...(input.clientContext === undefined ? {} : { clientContext: input.clientContext }),
    };
    return new Promise<InvokeOutcome>((finish) => {
      const cur: Current = {
        input,
        started: performance.now(),
        ...(opts.cold && this.initDurationMs !== undefined ? { initDurationMs: this.initDurationMs } : {}),
        fatal: false,
        finish,
        ...(opts.onResponse === undefined ? {} : { onResponse: opts.onResponse }),
      };
      this.log.begin(input.requestId, opts.cold);
      this.log.platform(startLine(input.requestId, this.version.version));
      cur.timer = setTimeout(() => this.onTimeout(cur), timeoutMs);
      this.current = cur;
      this.freezer.wake();
      if (this.pendingNext !== undefined) {
        const p = this.pendingNext;
        this.pendingNext = undefined;
        p.resolve(req);
      } else {
        this.queued = req;
      }
    });
  }

  // ---- EnvironmentPort: calls from the runtime, through the Runtime API ----

  next(signal: AbortSignal): Promise<InvocationRequest> {
    if (this.state === 'initializing') {
      this.initDurationMs = performance.now() - this.initStarted;
      this.state = 'idle';
      const w = this.initWaiter;
      this.initWaiter = undefined;
      w?.resolve();
    } else if (this.state === 'busy' && this.current !== undefined) {
      if (this.current.response === undefined) {
        // The runtime moved on without answering: Lambda reports the invocation as failed.
        this.current.response = { payload: errorPayload('Runtime.NoResponse', 'Runtime moved on without posting a response'), functionError: 'Unhandled' };
      }
      this.completeSoon(this.current);
    }
    if (this.pendingNext !== undefined) {
      return Promise.reject(new Error('a request for the next invocation is already pending'));
    }
    if (this.state === 'stopping' || this.state === 'stopped') return Promise.reject(new Error('environment is shutting down'));
    return new Promise<InvocationRequest>((resolve, reject) => {
      if (this.queued !== undefined) {
        const q = this.queued;
        this.queued = undefined;
        resolve(q);
        return;
      }
      this.pendingNext = { resolve, reject };
      this.freezer.idle(this.sandbox);
      signal.addEventListener('abort', () => {
        if (this.pendingNext?.resolve === resolve) this.pendingNext = undefined;
        reject(new Error('runtime disconnected'));
      }, { once: true });
    });
  }

  response(requestId: string, payload: Buffer): RuntimeApiResult {
    const cur = this.current;
    if (cur === undefined || cur.input.requestId !== requestId) return RAPI_ERRORS.InvalidRequestID;
    if (cur.response !== undefined) return invalidStateTransition(S.ResponseSent, S.InvocationResponse);
    cur.response = { payload };
    this.respond(cur);
    return ACCEPTED;
  }

  error(requestId: string, report: RuntimeErrorReport): RuntimeApiResult {
    const cur = this.current;
    if (cur === undefined || cur.input.requestId !== requestId) return RAPI_ERRORS.InvalidRequestID;
    if (cur.response !== undefined) return invalidStateTransition(S.ResponseSent, S.InvocationErrorResponse);
    cur.response = { payload: normaliseErrorBody(report), functionError: 'Unhandled' };
    this.respond(cur);
    return ACCEPTED;
  }

  initError(report: RuntimeErrorReport): RuntimeApiResult {
    if (this.state !== 'initializing') return invalidStateTransition(S.Ready, S.InitError);
    this.failInit(new InitFailure(report.errorType ?? 'Runtime.Unknown', '', normaliseErrorBody(report)));
    return ACCEPTED;
  }

  startPathName(): string {
    const p = [...this.startPath];
    return p.length === 0 ? 'plain' : p.join('+');
  }

  codeCache(): { data?: Buffer; produce: boolean } {
    if (this.state !== 'initializing') return { produce: false };
    if (this.o.produceCodeCache !== undefined) return { produce: !this.o.produceCodeCache.received };
    const data = this.codeCacheHandle?.get();
    if (data === undefined) return { produce: false };
    this.startPath.add('code-cache');
    return { data, produce: false };
  }

  codeCacheLimit(): number {
    const sink = this.o.produceCodeCache;
    return sink === undefined || sink.received || this.state !== 'initializing' ? 0 : sink.maxBytes;
  }

  storeCodeCache(data: Buffer): RuntimeApiResult {
    // Only the producer, once, during its Init: any other upload is refused (codeCacheLimit() said so first).
    if (this.codeCacheLimit() === 0) return CODE_CACHE_REFUSED;
    this.o.produceCodeCache?.receive(data);
    return ACCEPTED;
  }

  restoreNext(_signal: AbortSignal): Promise<void> {
    // The process is restored by the time it can ask: its afterRestore hooks may run now.
    if (this.restore !== undefined && this.state === 'initializing') return Promise.resolve();
    return Promise.reject(invalidStateTransition(S.Ready, S.RestoreReady));
  }

  restoreError(report: RuntimeErrorReport): RuntimeApiResult {
    if (this.restore === undefined || this.state !== 'initializing') return invalidStateTransition(S.Ready, S.RestoreError);
    this.failInit(new InitFailure(report.errorType ?? 'Runtime.RestoreError', '', normaliseErrorBody(report)));
    return ACCEPTED;
  }

  // ---- lifecycle events ----

  /** The runtime answered. The timeout keeps running: the invocation lasts until the runtime asks for the next one. */
  private respond(cur: Current): void {
    const tell = cur.onResponse;
    if (tell !== undefined && cur.response !== undefined) {
      cur.onResponse = undefined;
      tell(cur.response);
    }
  }

  /**
   * Complete after the event loop has polled once more, so that output the runtime wrote to its stdout before
   * calling the Runtime API is read and attributed to this invocation, not the next.
   */
  private completeSoon(cur: Current): void {
    setImmediate(() => setImmediate(() => this.complete(cur)));
  }

  /** The runtime asked for the next invocation (or died): the current one is over. */
  private complete(cur: Current): void {
    if (this.current !== cur) return;
    this.current = undefined;
    if (cur.timer !== undefined) clearTimeout(cur.timer);
    const durationMs = performance.now() - cur.started;
    const id = cur.input.requestId;
    const tail = this.log.end([
      endLine(id),
      reportLine({
        requestId: id,
        durationMs,
        memorySizeMb: this.version.config.memoryMb,
        maxMemoryUsedMb: Math.max(1, Math.round((this.sandbox?.maxMemoryBytes() ?? 0) / (1024 * 1024))),
        // An environment initialised ahead of traffic: no Init Duration on its invocations, as on Lambda.
        ...(cur.initDurationMs === undefined ? (this.o.provisioned === true ? { startPath: 'provisioned-concurrency' } : {}) : this.restore !== undefined
          ? { restoreDurationMs: cur.initDurationMs, startPath: this.startPathName() }
          : { initDurationMs: cur.initDurationMs, startPath: this.startPathName() }),
        ...(cur.timedOut === true ? { status: 'timeout' as const } : cur.fatal && cur.response?.functionError !== undefined ? { status: 'error' as const } : {}),
      }),
    ]);
    if (!cur.fatal) this.state = 'idle';
    this.lastUsed = Date.now();
    const r = cur.response ?? { payload: errorPayload('Runtime.Unknown', 'Unknown application error occurred'), functionError: 'Unhandled' as const };
    cur.finish({
      payload: r.payload,
      ...(r.functionError === undefined ? {} : { functionError: r.functionError }),
      tail,
      durationMs,
      ...(cur.initDurationMs === undefined ? {} : { initDurationMs: cur.initDurationMs }),
      fatal: cur.fatal,
    });
  }

  /**
   * The function's timeout passed before the runtime asked for the next event. Without an answer, the invocation
   * fails with Sandbox.Timedout; with one (already given to the caller), the answer stands. Either way the
   * environment is stopped and never serves again: a runtime that answers and then keeps running must not hold
   * its environment, and the capacity behind it, forever.
   */
  private onTimeout(cur: Current): void {
    if (this.current !== cur) return;
    const secs = this.version.config.timeoutSec.toFixed(2);
    const id = cur.input.requestId;
    this.log.platform(`${new Date().toISOString()} ${id} Task timed out after ${secs} seconds`);
    cur.response ??= { payload: errorPayload('Sandbox.Timedout', `RequestId: ${id} Error: Task timed out after ${secs} seconds`), functionError: 'Unhandled' };
    cur.timedOut = true;
    cur.fatal = true;
    this.complete(cur);
    void this.stop();
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, oomKilled: boolean): void {
    const wasStopping = this.state === 'stopping' || this.state === 'stopped';
    const how = signal !== null ? `signal: ${signal === 'SIGKILL' ? 'killed' : signal.toLowerCase().replace(/^sig/, '')}` : `exit status ${code ?? 0}`;
    const errorType = oomKilled ? 'Runtime.OutOfMemory' : 'Runtime.ExitError';
    if (this.state === 'initializing') {
      this.failInit(new InitFailure(errorType, `Runtime exited with error: ${how}`));
    }
    const cur = this.current;
    if (cur !== undefined && !wasStopping) {
      const id = cur.input.requestId;
      const msg = `RequestId: ${id} Error: Runtime exited with error: ${how}`;
      this.log.platform(msg);
      this.log.platform(errorType);
      cur.response ??= { payload: errorPayload(errorType, msg), functionError: 'Unhandled' };
      cur.fatal = true;
      this.completeSoon(cur);
    } else if (cur !== undefined) {
      cur.fatal = true;
      this.completeSoon(cur);
    }
    if (!wasStopping) {
      this.o.logger.debug({ env: this.id, code, signal, oomKilled }, 'environment exited');
      void this.stop();
    }
  }

  private failInit(f: InitFailure): void {
    if (this.initFailure !== undefined || this.state !== 'initializing') return;
    this.initFailure = f;
    this.initDurationMs = performance.now() - this.initStarted;
    f.initDurationMs = this.initDurationMs;
    f.tail = this.log.takeInitTail();
    const w = this.initWaiter;
    this.initWaiter = undefined;
    w?.reject(f);
  }

  /** Shutdown: SIGTERM, then SIGKILL after the grace period; release everything. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    if (this.state === 'stopping') {
      await this.exitedPromise;
      return;
    }
    // A restore cell runs no process yet: nothing to shut down gracefully.
    const graceful = this.state !== 'cell';
    this.state = 'stopping';
    this.freezer.wake();
    // The runtime's pending /next stays unanswered during Shutdown, as on Lambda: answering it would make the
    // runtime exit before its SIGTERM handlers ran.
    const sb = this.sandbox;
    if (sb !== undefined && graceful) {
      sb.kill('SIGTERM');
      let t: NodeJS.Timeout | undefined;
      await Promise.race([sb.exited, new Promise((r) => { t = setTimeout(r, this.o.shutdownGraceMs ?? 2000); })]);
      clearTimeout(t);
    }
    await this.destroy();
  }

  private async destroy(): Promise<void> {
    this.state = 'stopped';
    this.specializeWaiter?.reject(new Error('environment is shut down'));
    this.specializeWaiter = undefined;
    await this.sandbox?.destroy();
    this.o.onStopped?.();
    this.pendingNext?.reject(new Error('environment is shut down'));
    this.pendingNext = undefined;
    await this.o.rapi.detach(this.id);
  }

  /** Invoked function ARN for a request through `qualifier`. */
  static arn(region: string, version: VersionRecord, qualifier: string | undefined): string {
    return functionArn(region, version.functionName, qualifier);
  }
}

/** Init failed: the invocation that caused it gets Lambda's error payload. */
export class InitFailure extends Error {
  readonly payload: Buffer;
  initDurationMs?: number;
  /** The Init phase's last 4 KB of log. */
  tail?: TailRing;
  constructor(readonly errorType: string, message: string, payload?: Buffer) {
    super(message || errorType);
    this.payload = payload ?? errorPayload(errorType, message);
  }
}

/** The environment of a function's runtime process: Lambda's variables over the runtime's, plus the function's own. */
export function lambdaEnvironment(version: VersionRecord, runtime: RuntimeDef, region: string, extra: Record<string, string>): Record<string, string> {
  const c = version.config;
  const env: Record<string, string> = {
    ...runtime.env,
    ...c.env,
    AWS_LAMBDA_FUNCTION_NAME: version.functionName,
    AWS_LAMBDA_FUNCTION_VERSION: version.version,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(c.memoryMb),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${version.functionName}`,
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    LAMBDA_TASK_ROOT: '/var/task',
    LAMBDA_RUNTIME_DIR: '/var/runtime',
    TZ: ':UTC',
    ...(c.handler === null ? {} : { _HANDLER: c.handler }),
    ...extra,
  };
  env.LANG ??= 'en_US.UTF-8';
  return env;
}

export function errorPayload(errorType: string, errorMessage: string): Buffer {
  return Buffer.from(JSON.stringify({ errorType, errorMessage }));
}

/** Keep the runtime's error body when it is JSON; otherwise wrap it as Lambda does. */
function normaliseErrorBody(r: RuntimeErrorReport): Buffer {
  try {
    const parsed: unknown = JSON.parse(r.body.toString('utf8'));
    if (parsed !== null && typeof parsed === 'object') return r.body;
  } catch {
    // not JSON
  }
  return errorPayload(r.errorType ?? 'Runtime.Unknown', r.body.toString('utf8'));
}

export const newRequestId = (): string => randomUUID();
