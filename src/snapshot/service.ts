import { chmod, lstat, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { Registry } from '../control/registry.js';
import type { VersionRecord } from '../control/model.js';
import type { SandboxDriver } from '../sandbox/driver.js';
import { runtimeTable, type RuntimeDef } from '../worker/runtimes.js';
import { lambdaEnvironment, type RestoreSource } from '../worker/environment.js';
import { BUILD_SUBDIR, NODE_RUNTIME_DIR, buildSnapshot, directSpawn, type SnapshotSpawn, type SnapshotSpawnRequest } from './builder.js';
import { BUNDLER_VIEW, bundlerMounts } from './bundle-step.js';
import { isSnapshotBuildError } from './errors.js';
import { BLOB_FILE, MANIFEST_FILE, parseManifest, readManifest, verifySnapshot, type VerifiedSnapshot } from './manifest.js';
import { readOutput } from './outputs.js';
import type { ReadOptions, Store } from '../store/store.js';

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
    codeDir: (sha256: string) => string | Promise<string>;
    driver: SandboxDriver;
    dataDir: string;
    region: string;
    logger: Logger;
    /** Host directory of a version's layers (its /opt), when it has any. */
    optDir?: (v: VersionRecord) => Promise<string | undefined>;
    /** Where snapshots are kept (`snapshot/<function>/<version>`: the blob, its manifest as metadata). */
    store: Store;
    /** Where snapshots are built and materialised for restores, outside the data directory. */
    runtimeDir: string;
    readOptions?: (v: VersionRecord) => ReadOptions;
  }) {
    this.root = join(o.runtimeDir, 'snapshots');
  }

  static artifact(functionName: string, version: string): string {
    return `snapshot/${functionName}/${version}`;
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
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    await this.importLegacy();
    for (const v of pending) if (SnapStart.applies(v) && v.state === 'Pending') this.optimise(v);
  }

  private pump(): void {
    if (this.building || this.closed) return;
    const v = this.queue.shift();
    if (v === undefined) return;
    this.building = true;
    // A build never takes the server down: whatever escapes build() is logged and the queue goes on.
    void this.build(v)
      .catch((err: unknown) => this.o.logger.error({ fn: v.functionName, version: v.version, err }, 'snapshot build crashed'))
      .finally(() => {
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
      await rm(out, { recursive: true, force: true });
      // The build sandbox sees (and may write) only out/.build, never out itself (see builder.ts).
      await mkdir(out, { recursive: true, mode: 0o700 });
      const sandboxed = this.o.driver.isolates;
      const optDir = await this.o.optDir?.(v);
      const codeDir = await this.o.codeDir(v.codeSha256);
      const result = await buildSnapshot({
        codeDir,
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
            spawn: this.sandboxSpawn(v, runtime, codeDir, out, optDir),
            view: { nodeBinary: '/var/lang/bin/node', runtimeDir: '/var/runtime', taskRoot: '/var/task', outDir: '/var/snapshot', optDir: '/opt', bundlerDir: `${BUNDLER_VIEW}/lib` },
          }
          : { spawn: directSpawn }),
      });
      await this.seal(out);
      await this.keep(v, out);
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
   * Only the two files Thaw writes there itself are made readable; no build process ever sees this directory.
   */
  private async seal(dir: string): Promise<void> {
    await chmod(dir, 0o755);
    for (const f of [BLOB_FILE, MANIFEST_FILE]) {
      const st = await lstat(join(dir, f)).catch(() => undefined);
      if (st?.isFile() === true) await chmod(join(dir, f), 0o644);
    }
  }

  /**
   * Commit a built snapshot to the store (blob chunks first, then the manifest naming them, the snapshot's own
   * manifest as its metadata) and leave only what a restore needs in the runtime directory.
   */
  private async keep(v: VersionRecord, out: string): Promise<void> {
    const manifest = await readManifest(out);
    await this.o.store.putBlob(SnapStart.artifact(v.functionName, v.version), 'snapshot', await readFile(join(out, BLOB_FILE)), { snapshot: manifest });
    for (const f of await readdir(out)) if (f !== BLOB_FILE && f !== MANIFEST_FILE) await rm(join(out, f), { recursive: true, force: true });
  }

  /** The snapshot's blob and manifest from the store into the runtime directory, once per process. */
  private async materialise(v: VersionRecord): Promise<void> {
    const out = this.dir(v);
    if (existsSync(join(out, MANIFEST_FILE)) && existsSync(join(out, BLOB_FILE))) return;
    const name = SnapStart.artifact(v.functionName, v.version);
    const m = this.o.store.manifest(name);
    if (m === undefined || m.type !== 'blob') throw new Error(`no snapshot ${name} in the store`);
    await mkdir(out, { recursive: true, mode: 0o755 });
    await this.o.store.materialiseBlob(name, join(out, BLOB_FILE), this.o.readOptions?.(v) ?? {});
    await writeFile(join(out, MANIFEST_FILE), `${JSON.stringify(m.meta?.snapshot ?? {}, null, 2)}\n`, { mode: 0o644 });
    await this.seal(out);
  }

  /** Snapshots written by earlier Thaw versions under DATA/snapshots move into the store. */
  private async importLegacy(): Promise<void> {
    const legacy = join(this.o.dataDir, 'snapshots');
    if (!existsSync(legacy)) return;
    for (const fn of await readdir(legacy).catch(() => [] as string[])) {
      for (const version of await readdir(join(legacy, fn)).catch(() => [] as string[])) {
        const dir = join(legacy, fn, version);
        try {
          // Written by a build that could write there too: read like build outputs (no links, regular files).
          const text = await readOutput(dir, MANIFEST_FILE, 1024 * 1024);
          const blob = await readOutput(dir, BLOB_FILE, 2 * 1024 * 1024 * 1024 - 1);
          if (text === undefined || blob === undefined) throw new Error('manifest or blob missing');
          const manifest = parseManifest(text.toString('utf8'));
          if (createHash('sha256').update(blob).digest('hex') !== manifest.blob.sha256) throw new Error('blob checksum mismatch');
          await this.o.store.putBlob(SnapStart.artifact(fn, version), 'snapshot', blob, { snapshot: manifest });
        } catch (err) {
          this.o.logger.warn({ fn, version, err }, 'legacy snapshot not imported (it will be re-created)');
        }
      }
    }
    await rm(legacy, { recursive: true, force: true });
  }

  /** The build process runs in a sandbox like the function's own, with the output directory writable. */
  private sandboxSpawn(v: VersionRecord, runtime: RuntimeDef, codeDir: string, out: string, optDir: string | undefined): SnapshotSpawn {
    return async (req: SnapshotSpawnRequest) => {
      const mounts = [
        { host: codeDir, sandbox: '/var/task' },
        ...(optDir === undefined ? [] : [{ host: optDir, sandbox: '/opt' }]),
        ...runtime.mounts.filter((m) => m.sandbox !== '/var/runtime'),
        { host: NODE_RUNTIME_DIR, sandbox: '/var/runtime' },
        ...bundlerMounts(),
        { host: join(out, BUILD_SUBDIR), sandbox: '/var/snapshot', writable: true },
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
        await this.materialise(v);
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
    // Expiry counts from the last use; the row is updated at most hourly.
    const now = Date.now();
    if (now - (this.lastUsed.get(k) ?? 0) > 60 * 60 * 1000) this.o.store.touch(SnapStart.artifact(v.functionName, v.version), now);
    this.lastUsed.set(k, now);
    return {
      dir: this.dir(v),
      blobFile: s.manifest.blob.file,
      flags: s.manifest.flags,
      initMs: s.manifest.initMs,
      ...(s.manifest.nodeOptions ? { nodeOptions: s.manifest.nodeOptions } : {}),
    };
  }

  /**
   * Remove snapshots unused for 14 days (by the store's last-use time); a later cold start re-creates them.
   * Their chunks go at the store's next collect.
   */
  async expire(now = Date.now()): Promise<number> {
    const names = this.o.store.expire('snapshot', EXPIRY_MS, now);
    for (const name of names) {
      const [, fn, version] = name.split('/');
      if (fn === undefined || version === undefined) continue;
      await rm(join(this.root, fn, version), { recursive: true, force: true });
      this.verified.delete(`${fn}:${version}`);
      this.lastUsed.delete(`${fn}:${version}`);
    }
    return names.length;
  }

  close(): void {
    this.closed = true;
  }
}

const key = (v: VersionRecord): string => `${v.functionName}:${v.version}`;

