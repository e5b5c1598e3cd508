import { execFileSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ACCEPTED, RAPI_RUNTIME_STATES, invalidStateTransition, type RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import { TestPort } from '../runtimes/helpers.js';
import type { RuntimeApiResult, RuntimeErrorReport } from '../../src/sandbox/runtime-api-types.js';
import { buildSnapshot, type BuildSnapshotOptions, type SnapshotBuildResult } from '../../src/snapshot/builder.js';
import { SnapshotBuildError } from '../../src/snapshot/errors.js';
import { restoreArgv } from '../../src/snapshot/restore.js';
import { nodeRuntimeDir } from '../../src/worker/runtimes.js';

/** Repository root (this file runs from dist/test/snapshot). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const NODES = {
  node24: path.join(nodeRuntimeDir(24), 'bin/node'),
  node22: path.join(nodeRuntimeDir(22), 'bin/node'),
} as const;

export { json, type Outcome } from '../runtimes/helpers.js';

/**
 * The runtimes tests' EnvironmentPort, answering /runtime/restore/next at once and counting the calls, with
 * /runtime/restore/error accepted only while restoring.
 */
export class RestorePort extends TestPort {
  restoreCalls = 0;

  override restoreNext(): Promise<void> {
    if (this.nextCalls > 0) return Promise.reject(invalidStateTransition(RAPI_RUNTIME_STATES.Running, RAPI_RUNTIME_STATES.RestoreReady));
    this.restoreCalls += 1;
    this.emit('restoreNext');
    return Promise.resolve();
  }

  override restoreError(report: RuntimeErrorReport): RuntimeApiResult {
    if (this.restoreCalls === 0 || this.nextCalls > 0) return invalidStateTransition(RAPI_RUNTIME_STATES.Running, RAPI_RUNTIME_STATES.RestoreError);
    this.restoreErrors.push(report);
    this.emit('restoreError', report);
    return ACCEPTED;
  }
}

export { spawnRuntime, type RuntimeProcess } from '../runtimes/helpers.js';
import { lambdaEnv as runtimeLambdaEnv, spawnRuntime, writeFiles, type RuntimeProcess } from '../runtimes/helpers.js';

/** The variables Lambda sets for a function (the runtimes tests' set, for published version 1). */
export function lambdaEnv(handler: string, taskRoot: string, extra: Record<string, string> = {}): Record<string, string> {
  return runtimeLambdaEnv(handler, taskRoot, undefined, {
    AWS_LAMBDA_FUNCTION_VERSION: '1',
    AWS_LAMBDA_LOG_STREAM_NAME: '2025/01/01/[1]0123456789abcdef',
    ...extra,
  });
}

export { writeFiles };

export async function waitFor(emitter: EventEmitter, event: string, timeoutMs = 10_000): Promise<unknown[]> {
  return once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) });
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), `thaw-snap-${prefix}-`));
}

/** Write a function's files and build its snapshot (outDir next to the code). */
export async function buildFunction(
  files: Record<string, string>,
  handler: string,
  opts: Partial<BuildSnapshotOptions> & { node?: string } = {},
): Promise<{ codeDir: string; outDir: string; result: SnapshotBuildResult }> {
  const root = await tempDir('fn');
  const codeDir = path.join(root, 'code');
  const outDir = path.join(root, 'snap');
  await writeFiles(codeDir, files);
  const result = await build(codeDir, handler, outDir, opts);
  return { codeDir, outDir, result };
}

export async function build(codeDir: string, handler: string, outDir: string, opts: Partial<BuildSnapshotOptions> & { node?: string } = {}): Promise<SnapshotBuildResult> {
  const node = opts.node ?? NODES.node24;
  return buildSnapshot({
    codeDir,
    handler,
    nodeBinary: node,
    runtimeId: node === NODES.node22 ? 'nodejs22.x' : 'nodejs24.x',
    env: lambdaEnv(handler, codeDir, { MY_VAR: 'at-build' }),
    outDir,
    timeoutMs: 120_000,
    ...opts,
  });
}

/** Build, expecting a SnapshotBuildError. */
export async function buildFailure(files: Record<string, string>, handler = 'index.handler', opts: Partial<BuildSnapshotOptions> = {}): Promise<SnapshotBuildError> {
  try {
    await buildFunction(files, handler, opts);
  } catch (err) {
    if (err instanceof SnapshotBuildError) return err;
    throw err;
  }
  throw new Error('the snapshot build succeeded');
}

export interface Restored {
  readonly port: RestorePort;
  readonly proc: RuntimeProcess;
  readonly envId: string;
}

let envCounter = 0;

/** Start a process from a snapshot blob, served by a real Runtime API server over a Unix socket. */
export async function restore(
  rapi: RuntimeApiServer,
  blobPath: string,
  codeDir: string,
  opts: { node?: string; env?: Record<string, string>; handler?: string } = {},
): Promise<Restored> {
  const envId = `snap${process.pid}x${envCounter++}`;
  const dir = await tempDir('sock');
  const socketPath = path.join(dir, 'rapi.sock');
  const port = new RestorePort();
  await rapi.attach(envId, port, { transport: 'unix', socketPath });
  const argv = restoreArgv({ nodeBinary: opts.node ?? NODES.node24, blobPath, flags: [], runtimeApiSocket: socketPath });
  const env = lambdaEnv(opts.handler ?? 'index.handler', codeDir, { MY_VAR: 'at-restore', AWS_LAMBDA_INITIALIZATION_TYPE: 'snap-start', ...opts.env });
  const proc = spawnRuntime(argv, env, codeDir);
  return { port, proc, envId };
}

/** Start the plain runtime (node bootstrap.cjs) for comparison. */
export async function plainStart(rapi: RuntimeApiServer, codeDir: string, handler: string, node = NODES.node24): Promise<Restored> {
  const envId = `plain${process.pid}x${envCounter++}`;
  const dir = await tempDir('sock');
  const socketPath = path.join(dir, 'rapi.sock');
  const port = new RestorePort();
  await rapi.attach(envId, port, { transport: 'unix', socketPath });
  const proc = spawnRuntime([node, path.join(ROOT, 'src/runtimes/node/bootstrap.cjs'), '--runtime-api-socket', socketPath], lambdaEnv(handler, codeDir), codeDir);
  return { port, proc, envId };
}

export async function stop(rapi: RuntimeApiServer, r: Restored): Promise<void> {
  await r.proc.stop();
  await rapi.detach(r.envId);
}

/** Wait for the restored process to call restore/next (or fail with its output). */
export async function restored(r: Restored, timeoutMs = 30_000): Promise<void> {
  if (r.port.restoreCalls > 0) return;
  try {
    await waitFor(r.port, 'restoreNext', timeoutMs);
  } catch (err) {
    throw new Error(`no restore/next: stdout=${r.proc.stdout()} stderr=${r.proc.stderr()}`, { cause: err });
  }
}

/**
 * A benchmark fixture with its dependencies installed: bench/.cache/fixtures/<name> when the benchmarks have
 * prepared it (used read-only), else a copy of test/fixtures/functions/<name> (the project's copy of the shared
 * benchmark function, so that tests need nothing outside the repository) under the OS temp directory, installed
 * once from its lockfile.
 */
export function installedFixture(name: string): string {
  const cached = path.join(ROOT, 'bench', '.cache', 'fixtures', name);
  if (existsSync(path.join(cached, '.installed'))) return cached;
  const dir = path.join(tmpdir(), 'thaw-snapshot-fixtures', name);
  if (!existsSync(path.join(dir, '.installed'))) {
    mkdirSync(dir, { recursive: true });
    cpSync(path.join(ROOT, 'test', 'fixtures', 'functions', name), dir, { recursive: true });
    execFileSync('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, stdio: 'ignore' });
    writeFileSync(path.join(dir, '.installed'), '');
  }
  return dir;
}
