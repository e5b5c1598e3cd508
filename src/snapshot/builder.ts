import { spawn as spawnChild } from 'node:child_process';
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { deserialize } from 'node:v8';
import { silentLogger, type Logger } from '../util/log.js';
import { PACKAGE_ROOT } from '../worker/runtimes.js';
import { bundleHandler, type BundleResult } from './bundle.js';
import { SnapshotBuildError } from './errors.js';
import { BLOB_FILE, binaryIdentityOf, commitManifest, fsyncDir, sha256File, uncommit, type SnapshotManifest } from './manifest.js';
import { parseBuildReport, type BuildReport } from './report.js';

/**
 * SnapStart for Node, host side: bundle the handler, run Init once inside `node --build-snapshot`
 * (src/runtimes/node/snapshot-entry.cjs), write the V8 startup snapshot, checksum it and commit a manifest.
 *
 *   outDir/bundle.cjs (+ .map)   the handler in one CommonJS file (kept for diagnosis)
 *   outDir/builtins.bin          snapshot-probe.cjs's description of the built-ins that cannot be snapshotted
 *   outDir/build-report.json     what the entry reported
 *   outDir/snapshot.blob         the snapshot, synced before...
 *   outDir/manifest.json         ...the manifest, written last (the commit point; see manifest.ts)
 *
 * The build process is started through one injectable function, `spawn(request)`: by default the Node binary
 * runs directly as a child (tests); the platform runs it inside a sandbox, where the code, the runtime files,
 * the binary and outDir appear at other paths (`view`).
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
  /** Host directory for the bundle, blob and manifest; created if missing, emptied of a previous snapshot. */
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
function sourceMapper(bundle: BundleResult, bundleView: string, codeDir: string, map: SourceMap | undefined): (text: string) => string {
  if (map === undefined) return (t) => t;
  const escaped = bundleView.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`${escaped}:(\\d+):(\\d+)`, 'g');
  const mapDir = dirname(bundle.file);
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
      return readFile(join(outHost, 'builtins.bin'));
    })();
    p.catch(() => probes.delete(binarySha));
    probes.set(binarySha, p);
    return p;
  }
  const data = await p;
  await writeFile(join(outHost, 'builtins.bin'), data);
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
  const view = {
    nodeBinary: opts.view?.nodeBinary ?? opts.nodeBinary,
    runtimeDir: opts.view?.runtimeDir ?? NODE_RUNTIME_DIR,
    taskRoot: opts.view?.taskRoot ?? codeDir,
    outDir: opts.view?.outDir ?? outDir,
  };
  const flags = [...(opts.flags ?? [])];
  const deadline = Date.now() + opts.timeoutMs;
  const remaining = (): number => Math.max(1, deadline - Date.now());

  await mkdir(outDir, { recursive: true });
  await uncommit(outDir);
  await rm(join(outDir, BLOB_FILE), { force: true });

  const env = buildEnv(opts.env);
  // The binary's identity first (hashing overlaps nothing else here, and is cached per binary).
  const identityPromise = binaryIdentityOf(opts.nodeBinary, 'unknown');
  const probeEnv = { PATH: env.PATH ?? '/usr/bin:/bin' };
  const bundlePromise = bundleHandler({
    codeDir,
    handler: opts.handler,
    nodeMajor: nodeMajor(opts.runtimeId, ''),
    outFile: join(outDir, 'bundle.cjs'),
    taskRoot: view.taskRoot,
    ...(opts.optDir === undefined ? {} : { optDir: opts.optDir, optRoot: opts.view?.optDir ?? opts.optDir }),
    minify: opts.minify ?? false,
    sourcemap: true,
    logger: log,
  });
  const identity0 = await identityPromise;
  const [bundle, builtins] = await Promise.all([
    bundlePromise,
    probeBuiltins(spawn, view.nodeBinary, view.runtimeDir, view.outDir, outDir, probeEnv, view.outDir, identity0.sha256, remaining()),
  ]);
  const nodeVersion = probedVersion(builtins);
  const identity = { ...identity0, version: nodeVersion };

  let map: SourceMap | undefined;
  if (bundle.mapFile !== undefined) {
    try {
      map = new SourceMap(JSON.parse(await readFile(bundle.mapFile, 'utf8')) as SourceMapPayload);
    } catch {
      map = undefined;
    }
  }
  const bundleView = join(view.outDir, 'bundle.cjs');
  const mapText = sourceMapper(bundle, bundleView, codeDir, map);

  const reportHost = join(outDir, 'build-report.json');
  await rm(reportHost, { force: true });
  const entry = join(view.runtimeDir, SNAPSHOT_ENTRY);
  let builder: string[];
  if (opts.codeCache === false) {
    // --build-snapshot-config (Node >= 21.6) takes the entry from the file; the entry's own argv follows `--`.
    await writeFile(join(outDir, 'snapshot-config.json'), JSON.stringify({ builder: entry, withoutCodeCache: true }));
    builder = ['--build-snapshot-config', join(view.outDir, 'snapshot-config.json'), '--'];
  } else {
    builder = ['--build-snapshot', entry];
  }
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
    report = parseBuildReport(await readFile(reportHost, 'utf8'));
  } catch {
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
  let sizeBytes: number;
  try {
    sizeBytes = (await stat(blobPath)).size;
  } catch {
    return fail(new SnapshotBuildError('BuildCrashed', 'The runtime reported success but wrote no snapshot'));
  }
  const fh = await open(blobPath, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  const sha256 = await sha256File(blobPath);
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
