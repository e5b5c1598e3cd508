import { spawn as spawnChild } from 'node:child_process';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { deserialize } from 'node:v8';
import { silentLogger, type Logger } from '../util/log.js';
import { PACKAGE_ROOT } from '../worker/runtimes.js';
import type { BundleResult } from './bundle.js';
import { bundleStep } from './bundle-step.js';
import { SnapshotBuildError } from './errors.js';
import { BLOB_FILE, binaryIdentityOf, commitManifest, fsyncDir, uncommit, type SnapshotManifest } from './manifest.js';
import { copyOutput, readOutput, writeInput } from './outputs.js';
import { parseBuildReport, type BuildReport } from './report.js';

/**
 * SnapStart for Node, host side: bundle the handler, run Init once inside `node --build-snapshot`
 * (src/runtimes/node/snapshot-entry.cjs), write the V8 startup snapshot, checksum it and commit a manifest.
 *
 * Every step runs as a process of its own, writing only into a scratch directory, outDir/.build (BUILD_SUBDIR):
 *
 *   .build/bundle.cjs (+ .map)    the handler in one CommonJS file (bundle-sandbox.ts)
 *   .build/builtins.bin           snapshot-probe.cjs's description of the built-ins that cannot be snapshotted
 *   .build/build-report.json      what the entry reported
 *   .build/snapshot.blob          the snapshot
 *
 * The host only ever reads from there through outputs.ts (no links followed, regular files within a size limit)
 * and writes what it keeps into outDir itself, a directory no build process sees:
 *
 *   outDir/snapshot.blob          a copy made by the host, hashed while copied and synced before...
 *   outDir/manifest.json          ...the manifest, written last (the commit point; see manifest.ts)
 *
 * The scratch directory is removed when the build ends. The processes are started through one injectable
 * function, `spawn(request)`: by default the Node binary runs directly as a child (tests); the platform runs
 * each inside a build sandbox, where the code, the runtime files, the bundler, the binary and the scratch
 * directory appear at other paths (`view`).
 */

export interface SnapshotSpawnRequest {
  /** argv[0] and its arguments, with paths as the build process sees them. */
  readonly argv: readonly string[];
  /** The complete environment: nothing from the host. */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** Kill the process (and what it started) after this long. */
  readonly timeoutMs: number;
}

export interface SnapshotSpawnResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  /** The last 64 KiB of each stream. */
  readonly stdout: string;
  readonly stderr: string;
}

export type SnapshotSpawn = (req: SnapshotSpawnRequest) => Promise<SnapshotSpawnResult>;

/** Where the build process sees things (paths inside the sandbox). Defaults: the host paths. */
export interface SnapshotView {
  readonly nodeBinary?: string;
  /** Directory holding bootstrap.cjs and snapshot-*.cjs (the sandbox's /var/runtime). */
  readonly runtimeDir?: string;
  /** The function's code (the sandbox's /var/task). Restores must see the code at the same path. */
  readonly taskRoot?: string;
  readonly outDir?: string;
  /** The function's layers (the sandbox's /opt). */
  readonly optDir?: string;
  /** The compiled bundler (bundle-sandbox.js and its modules; see bundlerMounts). */
  readonly bundlerDir?: string;
}

export interface BuildSnapshotOptions {
  /** Host directory of the function's extracted code. */
  readonly codeDir: string;
  /** Host directory of the function's layers, merged (what its environments mount at /opt), if it has any. */
  readonly optDir?: string;
  /** _HANDLER */
  readonly handler: string;
  /** Host path of the runtime's Node binary. */
  readonly nodeBinary: string;
  /** nodejs24.x, nodejs22.x */
  readonly runtimeId: string;
  /** The function's environment plus the Lambda variables, as at Init. */
  readonly env: Readonly<Record<string, string>>;
  /**
   * Host directory for the blob and manifest; created if missing, emptied of a previous snapshot. The build's
   * processes write only into its subdirectory BUILD_SUBDIR (the one a sandbox mounts writable).
   */
  readonly outDir: string;
  /** Budget for Init + beforeCheckpoint hooks + writing the snapshot. */
  readonly timeoutMs: number;
  readonly logger?: Logger;
  readonly spawn?: SnapshotSpawn;
  readonly view?: SnapshotView;
  /** Node/V8 options for build and restore alike (default none). */
  readonly flags?: readonly string[];
  /** Minify the bundle: true (identifiers too: names in stack traces change), 'whitespace', or false (default). */
  readonly minify?: boolean | 'whitespace';
  /**
   * Keep V8's compiled bytecode of the functions Init ran in the snapshot (Node's default, true). Without it
   * the blob is smaller and the build faster, and functions compile again on first use after restore.
   */
  readonly codeCache?: boolean;
}

export interface SnapshotBuildResult {
  readonly blobPath: string;
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly buildMs: number;
  readonly nodeVersion: string;
  readonly flags: string[];
  readonly manifest: SnapshotManifest;
  /** What bundling left for run time, and its warnings. */
  readonly bundle: Pick<BundleResult, 'sizeBytes' | 'inputs' | 'externals' | 'warnings'>;
  /** Init duration inside the build, and what Init touched. */
  readonly initMs: number;
  readonly deferred: readonly string[];
}

/** The host directory of the Node runtime files (bootstrap.cjs, snapshot-entry.cjs, ...). */
export const NODE_RUNTIME_DIR = join(PACKAGE_ROOT, 'src', 'runtimes', 'node');
export const SNAPSHOT_ENTRY = 'snapshot-entry.cjs';
export const SNAPSHOT_PROBE = 'snapshot-probe.cjs';

const TAIL_BYTES = 64 * 1024;

/** The scratch directory under outDir that the build's processes write (and a build sandbox mounts). */
export const BUILD_SUBDIR = '.build';
/** Size limits on what the host reads back from the scratch directory. */
/** The blob is read back into one Buffer by the store (readFile's limit is 2 GiB - 1). */
const MAX_BLOB_BYTES = 2 * 1024 * 1024 * 1024 - 1;
const MAX_REPORT_BYTES = 1024 * 1024;
const MAX_BUILTINS_BYTES = 16 * 1024 * 1024;
const MAX_MAP_BYTES = 64 * 1024 * 1024;

/** The default spawn: the binary as a direct child, in its own process group, killed on timeout. */
export const directSpawn: SnapshotSpawn = (req) =>
  new Promise((resolvePromise, reject) => {
    const [cmd, ...args] = req.argv;
    if (cmd === undefined) {
      reject(new Error('empty argv'));
      return;
    }
    const child = spawnChild(cmd, args, { env: { ...req.env }, cwd: req.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    const keep = (s: string, d: string): string => {
      const t = s + d;
      return t.length > TAIL_BYTES ? t.slice(t.length - TAIL_BYTES) : t;
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = keep(stdout, d)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = keep(stderr, d)));
    let timedOut = false;
    const kill = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, req.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      kill(); // anything Init started that outlived the process
      resolvePromise({ code, signal, timedOut, stdout, stderr });
    });
  });

function nodeMajor(runtimeId: string, version: string): number {
  const m = /^nodejs(\d+)\.x$/.exec(runtimeId) ?? /^v(\d+)\./.exec(version);
  const major = Number(m?.[1]);
  if (!Number.isInteger(major)) throw new SnapshotBuildError('BuildCrashed', `SnapStart is not available for runtime ${runtimeId}`);
  return major;
}

/** Clean build environment: the function's variables, without what only a live environment has. */
function buildEnv(env: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = { ...env, AWS_LAMBDA_INITIALIZATION_TYPE: 'snap-start' };
  delete out.AWS_LAMBDA_RUNTIME_API;
  out.PATH ??= '/usr/local/bin:/usr/bin:/bin';
  return out;
}

/** Rewrite `BUNDLE:line:col` positions in a message into the function's own `file:line:col`. */
function sourceMapper(bundleView: string, codeDir: string, map: SourceMap | undefined): (text: string) => string {
  if (map === undefined) return (t) => t;
  const escaped = bundleView.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`${escaped}:(\\d+):(\\d+)`, 'g');
  const mapDir = dirname(bundleView);
  return (text) =>
    text.replace(re, (whole, line: string, col: string) => {
      const e = map.findEntry(Number(line) - 1, Number(col) - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number };
      if (e.originalSource === undefined || e.originalLine === undefined) return whole;
      const src = e.originalSource.startsWith('file://') ? new URL(e.originalSource).pathname : resolve(mapDir, e.originalSource);
      return `${relative(codeDir, src)}:${e.originalLine + 1}:${(e.originalColumn ?? 0) + 1}`;
    });
}

/** An exception that escaped Init's callbacks (Node prints it and exits 1: `uncaughtException` does not apply in a snapshot build). */
function uncaughtError(stdout: string, stderr: string): { errorType: string; message: string; site?: string } | undefined {
  // Node prints "FILE:LINE: Uncaught Type: message" (on stdout) for a throw from a callback, and the usual
  // "Type: message\n    at ..." (on stderr) for a throw during the entry script.
  const uncaught = /^(\S+):(\d+): Uncaught ((?:[A-Za-z_$][\w$]*\.)*[A-Z][\w$]*): (.*)$/m.exec(`${stderr}\n${stdout}`);
  if (uncaught !== null && uncaught[3] !== undefined) {
    const known = uncaught[1] !== undefined && !uncaught[1].startsWith('<');
    return { errorType: uncaught[3], message: uncaught[4] ?? '', ...(known ? { site: `${uncaught[1]}:${uncaught[2]}:1` } : {}) };
  }
  const lines = stderr.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(?:(\S+):(\d+): Uncaught )?((?:[A-Za-z_$][\w$]*\.)*[A-Z][\w$]*(?:Error|Exception)): (.*)$/.exec(lines[i] ?? '');
    if (m === null || m[3] === undefined) continue;
    const at = /\(?(\S+:\d+:\d+)\)?\s*$/.exec(lines[i + 1] ?? '');
    const site = at?.[1] ?? (m[1] === undefined ? undefined : `${m[1]}:${m[2]}:1`);
    return { errorType: m[3], message: m[4] ?? '', ...(site === undefined ? {} : { site }) };
  }
  return undefined;
}

/** The last meaningful line of a crashed build's stderr. */
function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^\d+: 0x/.test(l) && !l.startsWith('#'));
  return lines[lines.length - 1] ?? '';
}

const probes = new Map<string, Promise<Buffer>>();

/** The Node version the probe ran with (its output is v8.serialize'd data from inside the sandbox: checked). */
function probedVersion(data: Buffer): string {
  let v: unknown;
  try {
    v = (deserialize(data) as { node?: unknown }).node;
  } catch {
    v = undefined;
  }
  if (typeof v !== 'string' || !/^v\d+\.\d+\.\d+/.test(v)) throw new SnapshotBuildError('BuildCrashed', 'The Node runtime described its built-in modules in an unreadable form');
  return v;
}

async function probeBuiltins(spawn: SnapshotSpawn, argv0: string, runtimeDir: string, outView: string, outHost: string, env: Record<string, string>, cwd: string, binarySha: string, timeoutMs: number): Promise<Buffer> {
  let p = probes.get(binarySha);
  if (p === undefined) {
    p = (async () => {
      const r = await spawn({ argv: [argv0, join(runtimeDir, SNAPSHOT_PROBE), join(outView, 'builtins.bin')], env, cwd, timeoutMs });
      if (r.code !== 0) throw new SnapshotBuildError('BuildCrashed', `The Node runtime could not describe its built-in modules (exit ${r.code ?? r.signal}): ${lastLine(r.stderr)}`);
      const data = await readOutput(outHost, 'builtins.bin', MAX_BUILTINS_BYTES);
      if (data === undefined) throw new SnapshotBuildError('BuildCrashed', 'The Node runtime did not describe its built-in modules');
      probedVersion(data);
      return data;
    })();
    p.catch(() => probes.delete(binarySha));
    probes.set(binarySha, p);
    return p;
  }
  const data = await p;
  await writeInput(outHost, 'builtins.bin', data);
  return data;
}

/**
 * Build a function's SnapStart snapshot. Resolves with the committed blob; throws SnapshotBuildError whose
 * `userMessage` is the StateReason to show (see errors.ts for the codes).
 */
export async function buildSnapshot(opts: BuildSnapshotOptions): Promise<SnapshotBuildResult> {
  const started = performance.now();
  const log = (opts.logger ?? silentLogger).child({ component: 'snapshot', runtime: opts.runtimeId, handler: opts.handler });
  const spawn = opts.spawn ?? directSpawn;
  const outDir = resolve(opts.outDir);
  const codeDir = resolve(opts.codeDir);
  const work = join(outDir, BUILD_SUBDIR);
  const view = {
    nodeBinary: opts.view?.nodeBinary ?? opts.nodeBinary,
    runtimeDir: opts.view?.runtimeDir ?? NODE_RUNTIME_DIR,
    taskRoot: opts.view?.taskRoot ?? codeDir,
    outDir: opts.view?.outDir ?? work,
    optDir: opts.optDir === undefined ? undefined : (opts.view?.optDir ?? opts.optDir),
    bundlerDir: opts.view?.bundlerDir,
  };
  const flags = [...(opts.flags ?? [])];
  const deadline = Date.now() + opts.timeoutMs;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  const major = nodeMajor(opts.runtimeId, '');

  await mkdir(outDir, { recursive: true });
  await uncommit(outDir);
  await rm(join(outDir, BLOB_FILE), { force: true });
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { mode: 0o700 });
  // In a sandbox the build runs as an unprivileged user; the scratch directory is the only place it may write.
  if (opts.view !== undefined) await chmod(work, 0o777);
  try {
    return await runBuild(opts, { started, log, spawn, outDir, work, view, flags, remaining, major });
  } finally {
    // Every build process is gone by now (spawn resolves once they all have exited): nothing races this.
    await rm(work, { recursive: true, force: true });
  }
}

interface BuildContext {
  readonly started: number;
  readonly log: Logger;
  readonly spawn: SnapshotSpawn;
  readonly outDir: string;
  readonly work: string;
  readonly view: { nodeBinary: string; runtimeDir: string; taskRoot: string; outDir: string; optDir: string | undefined; bundlerDir: string | undefined };
  readonly flags: string[];
  readonly remaining: () => number;
  readonly major: number;
}

async function runBuild(opts: BuildSnapshotOptions, c: BuildContext): Promise<SnapshotBuildResult> {
  const { started, log, spawn, outDir, work, view, flags, remaining } = c;
  const env = buildEnv(opts.env);
  const probeEnv = { PATH: env.PATH ?? '/usr/bin:/bin' };
  const entry = join(view.runtimeDir, SNAPSHOT_ENTRY);
  let builder: string[];
  if (opts.codeCache === false) {
    // --build-snapshot-config (Node >= 21.6) takes the entry from the file; the entry's own argv follows `--`.
    await writeInput(work, 'snapshot-config.json', JSON.stringify({ builder: entry, withoutCodeCache: true }));
    builder = ['--build-snapshot-config', join(view.outDir, 'snapshot-config.json'), '--'];
  } else {
    builder = ['--build-snapshot', entry];
  }
  // Bundling (in a process of its own), the built-ins probe and the binary's identity, side by side. All are
  // awaited to the end before anything else happens (the scratch directory is removed after a failure, and a
  // step failing early must be neither an unhandled rejection nor a process still writing there).
  const identityPromise = binaryIdentityOf(opts.nodeBinary, 'unknown');
  const [bundled, identified, probed] = await Promise.allSettled([
    bundleStep({
      spawn,
      nodeBinary: view.nodeBinary,
      ...(view.bundlerDir === undefined ? {} : { bundlerDir: view.bundlerDir }),
      codeDir: view.taskRoot,
      ...(view.optDir === undefined ? {} : { optDir: view.optDir }),
      outDir: view.outDir,
      hostOutDir: work,
      handler: opts.handler,
      nodeMajor: c.major,
      minify: opts.minify ?? false,
      timeoutMs: remaining(),
    }),
    identityPromise,
    identityPromise.then((id) => probeBuiltins(spawn, view.nodeBinary, view.runtimeDir, view.outDir, work, probeEnv, view.outDir, id.sha256, remaining())),
  ]);
  if (bundled.status === 'rejected') throw bundled.reason;
  if (identified.status === 'rejected') throw identified.reason;
  if (probed.status === 'rejected') throw probed.reason;
  const [bundle, identity0, builtins] = [bundled.value, identified.value, probed.value];
  // The source map is read before Init runs (Init could replace it afterwards).
  let map: SourceMap | undefined;
  if (bundle.mapFile !== undefined) {
    try {
      const text = await readOutput(work, 'bundle.cjs.map', MAX_MAP_BYTES);
      map = text === undefined ? undefined : new SourceMap(JSON.parse(text.toString('utf8')) as SourceMapPayload);
    } catch {
      map = undefined;
    }
  }
  const nodeVersion = probedVersion(builtins);
  const identity = { ...identity0, version: nodeVersion };
  const bundleView = join(view.outDir, 'bundle.cjs');
  const mapText = sourceMapper(bundleView, view.taskRoot, map);

  const argv = [
    view.nodeBinary,
    ...flags,
    '--snapshot-blob', join(view.outDir, BLOB_FILE),
    ...builder,
    '--bundle', bundleView,
    '--task-file', bundle.taskFile,
    '--handler-path', bundle.exportPath.join('.'),
    '--builtins', join(view.outDir, 'builtins.bin'),
    '--report', join(view.outDir, 'build-report.json'),
  ];
  log.debug({ argv }, 'snapshot build starting');
  const run = await spawn({ argv, env, cwd: view.taskRoot, timeoutMs: remaining() });
  for (const line of `${run.stdout}${run.stderr}`.split('\n')) if (line.trim() !== '') log.debug({ line }, 'snapshot build output');

  const fail = async (err: SnapshotBuildError): Promise<never> => {
    await rm(join(outDir, BLOB_FILE), { force: true });
    log.info({ code: err.code, reason: err.userMessage }, 'snapshot build failed');
    throw err;
  };

  let report: BuildReport | undefined;
  try {
    const text = await readOutput(work, 'build-report.json', MAX_REPORT_BYTES);
    report = text === undefined ? undefined : parseBuildReport(text.toString('utf8'));
  } catch (err) {
    if (err instanceof SnapshotBuildError) return fail(err);
    report = undefined;
  }
  if (run.timedOut) {
    return fail(new SnapshotBuildError('Timeout', `Init and the beforeCheckpoint hooks did not finish within ${(opts.timeoutMs / 1000).toFixed(1)} s while the SnapStart snapshot was built`));
  }
  if (report !== undefined && !report.ok) {
    const details = report.details.map((d) => (d.site === undefined ? d.what : `${d.what} (at ${mapText(d.site)})`));
    return fail(new SnapshotBuildError(report.code, mapText(report.message), { details, ...(report.errorType === undefined ? {} : { errorType: report.errorType }) }));
  }
  if (report === undefined || run.code !== 0) {
    const stderr = run.stderr;
    if (/global handle not serialized|Unknown external reference|CheckGlobalAndEternalHandles/.test(stderr)) {
      return fail(new SnapshotBuildError(
        'Unsupported',
        'Init left something a V8 snapshot cannot hold (a network module, fetch or Request/Response/Headers reached through globalThis, an open handle, or a native addon): create it in the handler or an afterRestore hook',
        { details: [lastLine(stderr)] },
      ));
    }
    const thrown = uncaughtError(run.stdout, stderr);
    if (thrown !== undefined) {
      const what = `${thrown.errorType}: ${thrown.message}`;
      return fail(new SnapshotBuildError('InitFailed', what, { errorType: thrown.errorType, details: [thrown.site === undefined ? what : `${what} (at ${mapText(thrown.site)})`] }));
    }
    return fail(new SnapshotBuildError('BuildCrashed', `The runtime exited (${run.code ?? run.signal}) without writing the snapshot: ${lastLine(stderr) || 'no output'}`, { details: [lastLine(stderr)] }));
  }

  const blobPath = join(outDir, BLOB_FILE);
  let copied: { sha256: string; sizeBytes: number } | undefined;
  try {
    copied = await copyOutput(work, BLOB_FILE, blobPath, MAX_BLOB_BYTES);
  } catch (err) {
    if (err instanceof SnapshotBuildError) return fail(err);
    throw err;
  }
  if (copied === undefined || copied.sizeBytes === 0) return fail(new SnapshotBuildError('BuildCrashed', 'The runtime reported success but wrote no snapshot'));
  const { sha256, sizeBytes } = copied;
  const buildMs = performance.now() - started;
  const manifest: SnapshotManifest = {
    format: 1,
    blob: { file: BLOB_FILE, sha256, sizeBytes },
    node: identity,
    flags,
    nodeOptions: env.NODE_OPTIONS ?? '',
    runtimeId: opts.runtimeId,
    handler: opts.handler,
    taskRoot: view.taskRoot,
    bundle: { sha256: bundle.sha256, sizeBytes: bundle.sizeBytes, minified: (opts.minify ?? false) !== false, inputs: bundle.inputs },
    codeCache: opts.codeCache !== false,
    createdAt: new Date().toISOString(),
    buildMs: Math.round(buildMs),
    initMs: Math.round(report.initMs * 1000) / 1000,
    hooks: report.hooks,
    deferred: report.deferred,
  };
  await fsyncDir(outDir);
  await commitManifest(outDir, manifest);
  log.info({ sizeBytes, buildMs: Math.round(buildMs), initMs: Math.round(report.initMs), deferred: report.deferred }, 'snapshot built');
  return {
    blobPath,
    sha256,
    sizeBytes,
    buildMs,
    nodeVersion,
    flags,
    manifest,
    bundle: { sizeBytes: bundle.sizeBytes, inputs: bundle.inputs, externals: bundle.externals, warnings: bundle.warnings },
    initMs: report.initMs,
    deferred: report.deferred,
  };
}
