import { EventEmitter, once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeRuntimeDir } from '../../src/worker/runtimes.js';
import { ACCEPTED, RAPI_ERRORS, RAPI_RUNTIME_STATES, invalidStateTransition } from '../../src/sandbox/runtime-api.js';
import type {
  EnvironmentPort,
  InvocationRequest,
  RuntimeApiResult,
  RuntimeErrorReport,
} from '../../src/sandbox/runtime-api-types.js';

/** Repository root (this file runs from dist/test/runtimes). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const NODE_BOOTSTRAP = path.join(ROOT, 'src/runtimes/node/bootstrap.cjs');
export const PYTHON_BOOTSTRAP = path.join(ROOT, 'src/runtimes/python/bootstrap.py');
export const NODES = {
  node24: path.join(nodeRuntimeDir(24), 'bin/node'),
  node22: path.join(nodeRuntimeDir(22), 'bin/node'),
} as const;
export const PYTHON = '/usr/bin/python3';

export const FUNCTION_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:fn-test';

export type Outcome =
  | { readonly kind: 'response'; readonly payload: Buffer }
  | { readonly kind: 'error'; readonly report: RuntimeErrorReport };

/**
 * A small EnvironmentPort for tests: queues invocations, hands them out on /next, records what the runtime
 * posts, and answers out-of-order calls like the emulator does.
 */
export class TestPort extends EventEmitter implements EnvironmentPort {
  nextCalls = 0;
  aborts = 0;
  readonly initErrors: RuntimeErrorReport[] = [];
  readonly restoreErrors: RuntimeErrorReport[] = [];
  /** Request id handed out and not yet answered. */
  current: string | undefined;
  private readonly queue: InvocationRequest[] = [];
  private readonly outcomes = new Map<string, (o: Outcome) => void>();
  private waiter: ((inv: InvocationRequest) => void) | undefined;
  private restored: (() => void) | undefined;

  /** Queue an invocation; resolves with what the runtime answers for it. */
  invoke(event: unknown, extra: Partial<InvocationRequest> = {}): Promise<Outcome> {
    const inv: InvocationRequest = {
      requestId: randomUUID(),
      payload: Buffer.from(JSON.stringify(event)),
      deadlineMs: Date.now() + 30_000,
      invokedFunctionArn: FUNCTION_ARN,
      traceId: 'Root=1-5f84c7a6-0c4ab2a34b3fb4a40d2e6d18;Parent=2a5c3d4e5f6a7b8c;Sampled=0',
      ...extra,
    };
    const outcome = new Promise<Outcome>((resolve) => this.outcomes.set(inv.requestId, resolve));
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w(inv);
    } else {
      this.queue.push(inv);
    }
    return outcome;
  }

  next(signal: AbortSignal): Promise<InvocationRequest> {
    this.nextCalls += 1;
    this.emit('next');
    const queued = this.queue.shift();
    if (queued !== undefined) {
      this.current = queued.requestId;
      return Promise.resolve(queued);
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiter = undefined;
        this.aborts += 1;
        this.emit('abort');
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = (inv) => {
        signal.removeEventListener('abort', onAbort);
        this.current = inv.requestId;
        resolve(inv);
      };
    });
  }

  response(requestId: string, payload: Buffer): RuntimeApiResult {
    if (requestId !== this.current) return RAPI_ERRORS.InvalidRequestID;
    this.settle(requestId, { kind: 'response', payload });
    return ACCEPTED;
  }

  error(requestId: string, report: RuntimeErrorReport): RuntimeApiResult {
    if (requestId !== this.current) return RAPI_ERRORS.InvalidRequestID;
    this.settle(requestId, { kind: 'error', report });
    return ACCEPTED;
  }

  initError(report: RuntimeErrorReport): RuntimeApiResult {
    if (this.nextCalls > 0) return invalidStateTransition(RAPI_RUNTIME_STATES.Ready, RAPI_RUNTIME_STATES.InitError);
    this.initErrors.push(report);
    this.emit('initError', report);
    return ACCEPTED;
  }

  restoreNext(signal: AbortSignal): Promise<void> {
    if (this.nextCalls > 0) {
      return Promise.reject(invalidStateTransition(RAPI_RUNTIME_STATES.Running, RAPI_RUNTIME_STATES.RestoreReady));
    }
    return new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.restored = resolve;
    });
  }

  restoreError(report: RuntimeErrorReport): RuntimeApiResult {
    this.restoreErrors.push(report);
    return ACCEPTED;
  }

  /** Let a pending /restore/next return. */
  restore(): void {
    this.restored?.();
    this.restored = undefined;
  }

  private settle(requestId: string, outcome: Outcome): void {
    this.current = undefined;
    this.outcomes.get(requestId)?.(outcome);
    this.outcomes.delete(requestId);
  }
}

export function json(outcome: Outcome): unknown {
  return JSON.parse((outcome.kind === 'response' ? outcome.payload : outcome.report.body).toString('utf8'));
}

export interface RuntimeProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
  /** Wait until stdout matches: what a runtime logs before posting may arrive after the post. */
  untilStdout(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Spawn a runtime with exactly `env` (never the host environment). */
export function spawnRuntime(argv: readonly string[], env: Record<string, string>, cwd: string): RuntimeProcess {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty argv');
  // Own process group, so that stop() also ends what the runtime started (a shell runtime's curl).
  const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    exited,
    stdout: () => out,
    stderr: () => err,
    async untilStdout(re, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      return out;
    },
    async stop() {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // The group is already gone.
        }
      }
      await exited;
    },
  };
}

/** The variables Lambda sets for a function, for a runtime talking to `api` (host:port) when given. */
export function lambdaEnv(handler: string, taskRoot: string, api?: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: '/usr/bin:/bin',
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    _HANDLER: handler,
    LAMBDA_TASK_ROOT: taskRoot,
    AWS_LAMBDA_FUNCTION_NAME: 'fn-test',
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '128',
    AWS_LAMBDA_LOG_STREAM_NAME: '2025/01/01/[$LATEST]0123456789abcdef',
    AWS_REGION: 'us-east-1',
    ...extra,
  };
  if (api !== undefined) env.AWS_LAMBDA_RUNTIME_API = api;
  return env;
}

export async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(root, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content, { mode: name.endsWith('bootstrap') ? 0o755 : 0o644 });
  }
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One HTTP request to a Runtime API address ('host:port' or 'unix:<path>'), on its own connection. */
export function rapi(
  address: string,
  method: string,
  urlPath: string,
  body?: Buffer | string,
  headers: http.OutgoingHttpHeaders = {},
  signal?: AbortSignal,
): Promise<Reply> {
  const where: http.RequestOptions = address.startsWith('unix:')
    ? { socketPath: address.slice('unix:'.length) }
    : { host: address.slice(0, address.lastIndexOf(':')), port: Number(address.slice(address.lastIndexOf(':') + 1)) };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, method, path: urlPath, headers, agent: false, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function waitFor(emitter: EventEmitter, event: string, timeoutMs = 10_000): Promise<unknown[]> {
  return once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) });
}
