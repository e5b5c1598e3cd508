import { chmod, chown, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { Registry } from '../control/registry.js';
import type { VersionRecord } from '../control/model.js';
import type { SandboxDriver } from '../sandbox/driver.js';
import { runtimeTable, type RuntimeDef } from '../worker/runtimes.js';
import { lambdaEnvironment, type RestoreSource } from '../worker/environment.js';
import { NODE_RUNTIME_DIR, buildSnapshot, directSpawn, type SnapshotSpawn, type SnapshotSpawnRequest } from './builder.js';
import { isSnapshotBuildError } from './errors.js';
import { verifySnapshot, type VerifiedSnapshot } from './manifest.js';

/** Snapshots unused this long are removed (and re-created on demand). */
const EXPIRY_MS = 14 * 24 * 60 * 60 * 1000;
const BUILD_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * SnapStart for Node: PublishVersion of a function with SnapStart.ApplyOn = PublishedVersions puts the version in
 * Pending and queues the optimisation here; the build (Init runs in a sandbox of its own) ends in Active, or in
 * Failed with a StateReason in the user's terms. Cold starts of the version restore from the snapshot after
 * checking its checksum and that it was made by the same runtime binary and flags; a snapshot that no longer
 * matches is rebuilt in the background while cold starts take the ordinary path.
 */
export class SnapStart {
  private readonly queue: VersionRecord[] = [];
  private building = false;
  private closed = false;
  /** Verified snapshots by version key, and the keys whose snapshot could not be used. */
  private readonly verified = new Map<string, VerifiedSnapshot | null>();
  private readonly lastUsed = new Map<string, number>();
  private readonly root: string;

  constructor(private readonly o: {
    registry: Registry;
    codeDir: (sha256: string) => string;
    driver: SandboxDriver;
    dataDir: string;
    region: string;
    logger: Logger;
    /** Host directory of a version's layers (its /opt), when it has any. */
    optDir?: (v: VersionRecord) => Promise<string | undefined>;
  }) {
    this.root = join(o.dataDir, 'snapshots');
  }

  static applies(v: VersionRecord): boolean {
    return v.version !== '$LATEST' && v.config.snapStart === 'PublishedVersions' && (v.config.runtime ?? '').startsWith('nodejs');
  }

  private dir(v: VersionRecord): string {
    return join(this.root, v.functionName, v.version);
  }

  /** A newly published version: Pending until its snapshot is made. */
  optimise(v: VersionRecord): void {
    if (!SnapStart.applies(v)) return;
    this.o.registry.setState(v.functionName, v.version, 'Pending', 'Lambda is creating a snapshot of the initialized execution environment for this version (SnapStart).', 'Creating');
    this.queue.push(v);
    this.pump();
  }

  /** After a restart: versions left Pending are optimised again. */
  async resume(pending: readonly VersionRecord[]): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    for (const v of pending) if (SnapStart.applies(v) && v.state === 'Pending') this.optimise(v);
  }

  private pump(): void {
    if (this.building || this.closed) return;
    const v = this.queue.shift();
    if (v === undefined) return;
    this.building = true;
    void this.build(v).finally(() => {
      this.building = false;
      this.pump();
    });
  }

  private async build(v: VersionRecord): Promise<void> {
    const runtime = runtimeTable().get(v.config.runtime ?? '');
    if (runtime === undefined || runtime.family !== 'nodejs') return;
    if (this.o.registry.getVersion(v.functionName, v.version) === undefined) return;
    const out = this.dir(v);
    const log = this.o.logger.child({ fn: v.functionName, version: v.version });
    try {
      await mkdir(out, { recursive: true, mode: 0o700 });
      const sandboxed = this.o.driver.isolates;
      if (sandboxed) await chmod(out, 0o777);
      const optDir = await this.o.optDir?.(v);
      const result = await buildSnapshot({
        codeDir: this.o.codeDir(v.codeSha256),
        ...(optDir === undefined ? {} : { optDir }),
        handler: v.config.handler ?? '',
        nodeBinary: runtime.binary.path,
        runtimeId: runtime.id,
        env: lambdaEnvironment(v, runtime, this.o.region, { AWS_LAMBDA_LOG_STREAM_NAME: 'snapstart-build' }),
        outDir: out,
        timeoutMs: BUILD_TIMEOUT_MS,
        // A smaller heap restores faster (extreme: 9% in bench/snapshot-probe.ts); names in stack traces stay.
        minify: 'whitespace',
        logger: log,
        ...(sandboxed
          ? {
            spawn: this.sandboxSpawn(v, runtime, out, optDir),
            view: { nodeBinary: '/var/lang/bin/node', runtimeDir: '/var/runtime', taskRoot: '/var/task', outDir: '/var/snapshot', optDir: '/opt' },
          }
          : { spawn: directSpawn }),
      });
      await this.seal(out);
      this.verified.delete(key(v));
      this.o.registry.setState(v.functionName, v.version, 'Active');
      log.info({ bytes: result.sizeBytes, buildMs: Math.round(result.buildMs), initMs: Math.round(result.initMs) }, 'snapshot created');
    } catch (e) {
      await this.seal(out).catch(() => undefined);
      if (isSnapshotBuildError(e)) {
        this.o.registry.setState(v.functionName, v.version, 'Failed', e.userMessage, e.stateReasonCode);
        log.warn({ code: e.code }, 'snapshot failed');
      } else {
        this.o.registry.setState(v.functionName, v.version, 'Failed', 'SnapStart could not create a snapshot because of an internal error.', 'InternalError');
        log.error({ err: e }, 'snapshot build crashed');
      }
    }
  }

  /**
   * Snapshots hold what Init read (secrets included). The parent directories are Thaw's alone (0700); the
   * snapshot directory itself stays traversable because restored environments (an unprivileged user) mount it.
   */
  private async seal(dir: string): Promise<void> {
    await chmod(dir, 0o755);
    for (const f of await readdir(dir)) {
      await chown(join(dir, f), 0, 0).catch(() => undefined);
      await chmod(join(dir, f), 0o644);
    }
  }

  /** The build process runs in a sandbox like the function's own, with the output directory writable. */
  private sandboxSpawn(v: VersionRecord, runtime: RuntimeDef, out: string, optDir: string | undefined): SnapshotSpawn {
    return async (req: SnapshotSpawnRequest) => {
      const mounts = [
        { host: this.o.codeDir(v.codeSha256), sandbox: '/var/task' },
        ...(optDir === undefined ? [] : [{ host: optDir, sandbox: '/opt' }]),
        ...runtime.mounts.filter((m) => m.sandbox !== '/var/runtime'),
        { host: NODE_RUNTIME_DIR, sandbox: '/var/runtime' },
        { host: out, sandbox: '/var/snapshot', writable: true },
      ];
      const sb = await this.o.driver.start({
        id: `snap-${Math.random().toString(16).slice(2, 10)}`,
        mounts,
        argv: req.argv,
        env: req.env,
        cwd: req.cwd,
        limits: { memoryBytes: Math.max(v.config.memoryMb, 1024) * 1024 * 1024, pids: 1024, cpuShares: 1024, tmpBytes: 512 * 1024 * 1024 },
      });
      let stdout = '';
      let stderr = '';
      const keep = (s: string, d: Buffer): string => (s + d.toString()).slice(-64 * 1024);
      sb.stdout.on('data', (d: Buffer) => { stdout = keep(stdout, d); });
      sb.stderr.on('data', (d: Buffer) => { stderr = keep(stderr, d); });
      let timedOut = false;
      const timer = setTimeout(() => { timedOut = true; void sb.destroy(); }, req.timeoutMs);
      const exit = await sb.exited;
      clearTimeout(timer);
      await sb.destroy();
      return { code: exit.code, signal: exit.signal, timedOut, stdout, stderr };
    };
  }

  /**
   * The snapshot to restore this version from, when there is a good one. Checked once per version and process
   * (checksum, runtime binary, flags); a snapshot that fails the check is rebuilt in the background.
   */
  async restorable(v: VersionRecord): Promise<RestoreSource | undefined> {
    if (!SnapStart.applies(v) || v.state !== 'Active') return undefined;
    const k = key(v);
    let s = this.verified.get(k);
    if (s === undefined) {
      const runtime = runtimeTable().get(v.config.runtime ?? '');
      try {
        s = await verifySnapshot(this.dir(v), runtime === undefined ? {} : { nodeBinary: runtime.binary.path });
      } catch (e) {
        s = null;
        this.o.logger.warn({ fn: v.functionName, version: v.version, err: e }, 'snapshot unusable; re-creating it');
        this.queue.push(v);
        this.pump();
      }
      this.verified.set(k, s);
    }
    if (s === null) return undefined;
    this.lastUsed.set(k, Date.now());
    return {
      dir: this.dir(v),
      blobFile: s.manifest.blob.file,
      flags: s.manifest.flags,
      initMs: s.manifest.initMs,
      ...(s.manifest.nodeOptions ? { nodeOptions: s.manifest.nodeOptions } : {}),
    };
  }

  /** Remove snapshots unused for 14 days; a later cold start re-creates them. */
  async expire(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const fn of await readdir(this.root).catch(() => [] as string[])) {
      for (const version of await readdir(join(this.root, fn)).catch(() => [] as string[])) {
        const dir = join(this.root, fn, version);
        const used = this.lastUsed.get(`${fn}:${version}`) ?? (await stat(dir)).mtimeMs;
        if (now - used < EXPIRY_MS) continue;
        await rm(dir, { recursive: true, force: true });
        this.verified.delete(`${fn}:${version}`);
        removed++;
      }
    }
    return removed;
  }

  close(): void {
    this.closed = true;
  }
}

const key = (v: VersionRecord): string => `${v.functionName}:${v.version}`;

