import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { Sandbox, SandboxDriver } from '../sandbox/driver.js';
import { RUNTIME_API_SOCKET } from '../sandbox/driver.js';
import { ACCEPTED, RAPI_ERRORS, RAPI_RUNTIME_STATES as S, invalidStateTransition, type RuntimeApiServer } from '../sandbox/runtime-api.js';
import type {
  EnvironmentPort, InvocationRequest, RuntimeApiResult, RuntimeErrorReport,
} from '../sandbox/runtime-api-types.js';
import type { VersionRecord } from '../control/model.js';
import { functionArn } from '../control/arn.js';
import type { RuntimeDef } from './runtimes.js';
import { LineSplitter } from './lines.js';
import { endLine, initStartLine, reportLine, startLine } from '../logs/format.js';

/**
 * One execution environment: a sandboxed runtime process serving one function version, one invocation at a
 * time, through its own Runtime API endpoint.
 *
 *   starting ─> initializing ─> idle ⇄ busy ─> stopping ─> stopped
 *        └──────────┴──────────────┴─────┴──> (failure) stopping
 */
export type EnvState = 'starting' | 'initializing' | 'idle' | 'busy' | 'stopping' | 'stopped';

export interface LogEntry { readonly requestId: string | null; readonly timestamp: number; readonly message: string }

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
  /** This invocation's log, START to REPORT. */
  readonly log: readonly LogEntry[];
  readonly durationMs: number;
  /** Init Duration, on the invocation that paid for Init. */
  readonly initDurationMs?: number;
  /** The environment cannot serve again (crash, timeout, OOM). */
  readonly fatal: boolean;
}

export interface EnvironmentOptions {
  readonly version: VersionRecord;
  readonly runtime: RuntimeDef;
  readonly codeDir: string;
  readonly driver: SandboxDriver;
  readonly rapi: RuntimeApiServer;
  readonly socketDir: string;
  readonly region: string;
  readonly logger: Logger;
  /** Lines written outside any invocation (Init, shutdown). */
  readonly onStrayLog: (entries: readonly LogEntry[]) => void;
  readonly initTimeoutMs?: number;
  readonly shutdownGraceMs?: number;
}

interface Current {
  readonly input: InvokeInput;
  readonly started: number;
  readonly log: LogEntry[];
  readonly initDurationMs?: number;
  response?: { payload: Buffer; functionError?: 'Unhandled' };
  fatal: boolean;
  timer?: NodeJS.Timeout;
  finish: (o: InvokeOutcome) => void;
}


export class Environment implements EnvironmentPort {
  readonly id = `e${randomBytes(8).toString('hex')}`;
  state: EnvState = 'starting';
  lastUsed = Date.now();
  private sandbox?: Sandbox;
  private initStarted = 0;
  private initDurationMs?: number;
  private initLog: LogEntry[] = [];
  private initWaiter?: { resolve: () => void; reject: (e: InitFailure) => void };
  private initFailure?: InitFailure;
  private pendingNext?: { resolve: (r: InvocationRequest) => void; reject: (e: Error) => void };
  private queued?: InvocationRequest;
  private current?: Current;
  private readonly logStream: string;
  private exitedPromise?: Promise<void>;

  constructor(private readonly o: EnvironmentOptions) {
    const d = new Date();
    this.logStream = `${d.getUTCFullYear()}/${String(d.getUTCMonth() + 1).padStart(2, '0')}/${String(d.getUTCDate()).padStart(2, '0')}/[${o.version.version}]${this.id.slice(1)}`;
  }

  get version(): VersionRecord {
    return this.o.version;
  }

  /**
   * Start the sandbox and run Init. Resolves when the runtime first asks for an invocation; rejects with an
   * InitFailure (carrying Lambda's error payload) when Init fails, crashes or takes longer than the init timeout.
   */
  async start(): Promise<void> {
    const { o } = this;
    const unix = o.driver.runtimeApiTransport === 'unix';
    const socketPath = join(o.socketDir, `${this.id}.sock`);
    const { address } = await o.rapi.attach(this.id, this, unix ? { transport: 'unix', socketPath } : { transport: 'tcp' });
    const c = o.version.config;
    const mounts = [{ host: o.codeDir, sandbox: '/var/task' }, ...o.runtime.mounts];
    const env: Record<string, string> = {
      ...o.runtime.env,
      ...c.env,
      AWS_LAMBDA_FUNCTION_NAME: o.version.functionName,
      AWS_LAMBDA_FUNCTION_VERSION: o.version.version,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(c.memoryMb),
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${o.version.functionName}`,
      AWS_LAMBDA_LOG_STREAM_NAME: this.logStream,
      AWS_LAMBDA_RUNTIME_API: unix ? '127.0.0.1:9001' : address,
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      AWS_REGION: o.region,
      AWS_DEFAULT_REGION: o.region,
      LAMBDA_TASK_ROOT: '/var/task',
      LAMBDA_RUNTIME_DIR: '/var/runtime',
      TZ: ':UTC',
      ...(c.handler === null ? {} : { _HANDLER: c.handler }),
    };
    env.LANG ??= 'en_US.UTF-8';
    for (const k of ['LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR']) env[k] = o.driver.resolve(env[k] as string, mounts);
    const memoryBytes = c.memoryMb * 1024 * 1024;
    // AWS_LAMBDA_EXEC_WRAPPER: Lambda runs the wrapper with the runtime's command line as its arguments. The
    // wrapper may start anything, so it also gets the Runtime API on TCP.
    const wrapper = o.runtime.family === 'provided' ? undefined : c.env.AWS_LAMBDA_EXEC_WRAPPER;
    const argv = o.runtime.argv(unix ? RUNTIME_API_SOCKET : undefined);
    this.initStarted = performance.now();
    this.state = 'initializing';
    this.initLog.push({ requestId: null, timestamp: Date.now(), message: initStartLine(o.runtime.id, o.runtime.binary.version) });
    const initDone = new Promise<void>((resolve, reject) => { this.initWaiter = { resolve, reject }; });
    try {
      this.sandbox = await o.driver.start({
        id: this.id,
        mounts,
        argv: wrapper === undefined ? argv : [wrapper, ...argv],
        env,
        cwd: '/var/task',
        limits: {
          memoryBytes,
          pids: 1024,
          // Lambda gives one full vCPU at 1769 MB, proportionally less or more.
          cpuShares: Math.max(2, Math.round((c.memoryMb / 1769) * 1024)),
          tmpBytes: c.ephemeralMb * 1024 * 1024,
        },
        ...(unix ? { runtimeApiSocket: socketPath } : {}),
        ...(o.runtime.tcpRuntimeApi || wrapper !== undefined ? { runtimeApiTcp: true } : {}),
      });
    } catch (e) {
      await this.destroy();
      throw new InitFailure('Runtime.Unknown', `Failed to start the execution environment: ${(e as Error).message}`);
    }
    const split = (line: string): void => this.onOutput(line);
    this.sandbox.stdout.pipe(new LineSplitter(split));
    this.sandbox.stderr.pipe(new LineSplitter(split));
    this.exitedPromise = this.sandbox.exited.then((x) => this.onExit(x.code, x.signal, x.oomKilled));
    const timer = setTimeout(() => this.failInit(new InitFailure('Sandbox.Timedout', `INIT_REPORT Init Duration: ${(o.initTimeoutMs ?? 10_000).toFixed(2)} ms Phase: init Status: timeout`)), o.initTimeoutMs ?? 10_000);
    try {
      await initDone;
    } catch (e) {
      await this.stop();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Run one invocation. The environment must be idle. */
  invoke(input: InvokeInput, opts: { cold: boolean }): Promise<InvokeOutcome> {
    if (this.state !== 'idle') throw new Error(`environment ${this.id} is ${this.state}, not idle`);
    this.state = 'busy';
    this.lastUsed = Date.now();
    const timeoutMs = this.o.version.config.timeoutSec * 1000;
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
        log: [...(opts.cold ? this.takeInitLog() : []), { requestId: input.requestId, timestamp: Date.now(), message: startLine(input.requestId, this.o.version.version) }],
        ...(opts.cold && this.initDurationMs !== undefined ? { initDurationMs: this.initDurationMs } : {}),
        fatal: false,
        finish,
      };
      cur.timer = setTimeout(() => this.onTimeout(cur), timeoutMs);
      this.current = cur;
      if (this.pendingNext !== undefined) {
        const p = this.pendingNext;
        this.pendingNext = undefined;
        p.resolve(req);
      } else {
        this.queued = req;
      }
    });
  }

  private takeInitLog(): LogEntry[] {
    const l = this.initLog;
    this.initLog = [];
    return l;
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

  restoreNext(_signal: AbortSignal): Promise<void> {
    return Promise.reject(new Error('this environment was not restored from a snapshot'));
  }

  restoreError(_report: RuntimeErrorReport): RuntimeApiResult {
    return invalidStateTransition(S.Ready, S.RestoreError);
  }

  // ---- lifecycle events ----

  private respond(cur: Current): void {
    if (cur.timer !== undefined) clearTimeout(cur.timer);
    cur.timer = undefined;
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
    const now = Date.now();
    cur.log.push({ requestId: id, timestamp: now, message: endLine(id) });
    cur.log.push({
      requestId: id,
      timestamp: now,
      message: reportLine({
        requestId: id,
        durationMs,
        memorySizeMb: this.o.version.config.memoryMb,
        maxMemoryUsedMb: Math.max(1, Math.round((this.sandbox?.maxMemoryBytes() ?? 0) / (1024 * 1024))),
        ...(cur.initDurationMs === undefined ? {} : { initDurationMs: cur.initDurationMs }),
        ...(cur.fatal && cur.response?.functionError !== undefined ? { status: 'error' as const } : {}),
      }),
    });
    if (!cur.fatal) this.state = 'idle';
    this.lastUsed = Date.now();
    const r = cur.response ?? { payload: errorPayload('Runtime.Unknown', 'Unknown application error occurred'), functionError: 'Unhandled' as const };
    cur.finish({
      payload: r.payload,
      ...(r.functionError === undefined ? {} : { functionError: r.functionError }),
      log: cur.log,
      durationMs,
      ...(cur.initDurationMs === undefined ? {} : { initDurationMs: cur.initDurationMs }),
      fatal: cur.fatal,
    });
  }

  private onTimeout(cur: Current): void {
    if (this.current !== cur || cur.response !== undefined) return;
    const secs = this.o.version.config.timeoutSec.toFixed(2);
    const id = cur.input.requestId;
    cur.log.push({ requestId: id, timestamp: Date.now(), message: `${new Date().toISOString()} ${id} Task timed out after ${secs} seconds` });
    cur.response = { payload: errorPayload('Sandbox.Timedout', `RequestId: ${id} Error: Task timed out after ${secs} seconds`), functionError: 'Unhandled' };
    cur.fatal = true;
    this.complete(cur);
    void this.stop();
  }

  private onOutput(line: string): void {
    const entry: LogEntry = { requestId: this.current?.input.requestId ?? null, timestamp: Date.now(), message: line };
    if (this.current !== undefined) this.current.log.push(entry);
    else if (this.state === 'initializing' || this.state === 'starting') this.initLog.push(entry);
    else this.o.onStrayLog([entry]);
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
      cur.log.push({ requestId: id, timestamp: Date.now(), message: msg }, { requestId: id, timestamp: Date.now(), message: errorType });
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
    f.log = this.takeInitLog();
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
    this.state = 'stopping';
    // The runtime's pending /next stays unanswered during Shutdown, as on Lambda: answering it would make the
    // runtime exit before its SIGTERM handlers ran.
    const sb = this.sandbox;
    if (sb !== undefined) {
      sb.kill('SIGTERM');
      let t: NodeJS.Timeout | undefined;
      await Promise.race([sb.exited, new Promise((r) => { t = setTimeout(r, this.o.shutdownGraceMs ?? 2000); })]);
      clearTimeout(t);
    }
    await this.destroy();
    const stray = this.takeInitLog();
    if (stray.length > 0) this.o.onStrayLog(stray);
  }

  private async destroy(): Promise<void> {
    this.state = 'stopped';
    await this.sandbox?.destroy();
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
  log: LogEntry[] = [];
  constructor(readonly errorType: string, message: string, payload?: Buffer) {
    super(message || errorType);
    this.payload = payload ?? errorPayload(errorType, message);
  }
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
