import { execFile } from 'node:child_process';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { VersionRecord } from '../control/model.js';
import type { Environment } from './environment.js';
import type { RuntimeDef } from './runtimes.js';
import { Mounter } from './mounter.js';
import { alive } from '../util/alive.js';

const run = promisify(execFile);


const REFILL_DELAY_MS = 50;

const waitingState = (kind: CellKind): 'stem' | 'cell' => (kind === 'stem' ? 'stem' : 'cell');

/** A cell's mount points on the shared mount: /var/task, /opt and, for a restore cell, /var/snapshot. */
const subdirs = (kind: CellKind): readonly string[] => (kind === 'stem' ? ['task', 'opt'] : ['task', 'opt', 'snapshot']);

/** A stem cell boots with these limits; specialisation applies the function's own. */
export const STEM_LIMITS = { memoryMb: 128, ephemeralMb: 512 } as const;

/**
 * What waits in the pool: a stem (a generic runtime booted in its sandbox) or a restore cell (a sandbox whose
 * init waits for a snapshot to restore; no process runs in it yet).
 */
export type CellKind = 'stem' | 'restore';

/**
 * Stem cells: generic runtimes already started inside their sandbox, each waiting with an empty /var/task and
 * /opt. The empty directories live on a tmpfs that Thaw mounts once with shared propagation, so read-only bind
 * mounts of a function's code and layers made onto them on the host appear inside the waiting sandbox.
 * Specialising a stem then costs a mount or two, a cgroup write and the function's own Init: no process or
 * runtime boot.
 *
 * Restore cells are the same idea for SnapStart: sandboxes built ahead of demand with empty /var/task, /opt
 * and /var/snapshot on that tmpfs; a restore mounts the code, layers and snapshot into one and starts the restored
 * process in it, so the sandbox start (bwrap, its init, joining the cgroup) is off the cold-start path.
 *
 * The pool keeps, per kind and runtime in use, a number of ready cells that follows the recent cold-start rate,
 * refills in the background one at a time, and discards a cell that fails instead of reusing it.
 */
export class StemCells {
  private readonly ready = new Map<string, Environment[]>();
  private readonly starting = new Map<string, number>();
  private readonly coldStarts = new Map<string, number[]>();
  private readonly failures = new Map<string, number>();
  private closed = false;
  private readonly mounter: Mounter;

  private constructor(
    private readonly root: string,
    private readonly make: (runtime: RuntimeDef, onStopped: () => void) => Environment,
    private readonly runtimes: ReadonlyMap<string, RuntimeDef>,
    private readonly logger: Logger,
    private readonly maxPerRuntime: number,
    private readonly canRestore: boolean,
  ) {
    this.mounter = new Mounter(logger);
    this.mounter.warm();
  }

  /** Mount the shared stem directory; undefined when this host cannot (not root, no mount namespaces). */
  static async create(o: {
    make: (runtime: RuntimeDef, onStopped: () => void) => Environment;
    runtimes: ReadonlyMap<string, RuntimeDef>;
    logger: Logger;
    maxPerRuntime?: number;
    warm?: readonly string[];
    /** The sandbox driver can start deferred sandboxes (needed for restore cells). */
    canRestore?: boolean;
  }): Promise<StemCells | undefined> {
    if (process.getuid?.() !== 0) return undefined;
    await StemCells.removeStale();
    const root = join('/run', 'thaw', `stems-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(root, { recursive: true, mode: 0o755 });
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'thaw-stems', root]);
      await run('mount', ['--make-shared', root]);
    } catch (err) {
      o.logger.warn({ err }, 'stem cells disabled: cannot prepare the shared stem mount');
      await rmdir(root).catch(() => undefined);
      return undefined;
    }
    const cells = new StemCells(root, o.make, o.runtimes, o.logger, o.maxPerRuntime ?? 4, o.canRestore ?? false);
    for (const id of o.warm ?? []) cells.refill('stem', id);
    return cells;
  }

  /** Unmount the stem directories of Thaw processes that no longer run (killed without a chance to clean up). */
  private static async removeStale(): Promise<void> {
    for (const name of await readdir('/run/thaw').catch(() => [] as string[])) {
      const pid = /^stems-(\d+)-[0-9a-f]+$/.exec(name)?.[1];
      if (pid === undefined || alive(Number(pid))) continue;
      const dir = join('/run', 'thaw', name);
      await run('umount', ['-l', dir]).catch(() => undefined);
      // rmdir, never a recursive delete: if the unmount failed, what is below may be a function's code.
      await rmdir(dir).catch(() => undefined);
    }
  }

  /** Whether a stem can become this version (Node runtimes, default /tmp size, no exec wrapper). */
  eligible(version: VersionRecord, runtime: RuntimeDef): boolean {
    return !this.closed && runtime.family === 'nodejs' && version.config.ephemeralMb === STEM_LIMITS.ephemeralMb
      && version.config.env.AWS_LAMBDA_EXEC_WRAPPER === undefined;
  }

  /** Whether a restore cell can start this version from its snapshot (Node runtimes, default /tmp size). */
  restorable(version: VersionRecord, runtime: RuntimeDef): boolean {
    return !this.closed && this.canRestore && runtime.family === 'nodejs' && version.config.ephemeralMb === STEM_LIMITS.ephemeralMb;
  }

  /** A ready cell of this kind and runtime, if there is one; counts the cold start and refills either way. */
  take(kind: CellKind, runtimeId: string): Environment | undefined {
    const k = `${kind}:${runtimeId}`;
    const now = Date.now();
    const recent = (this.coldStarts.get(k) ?? []).filter((t) => now - t < 60_000);
    recent.push(now);
    this.coldStarts.set(k, recent);
    let env: Environment | undefined;
    const list = this.ready.get(k);
    while (list !== undefined && list.length > 0 && env === undefined) {
      const e = list.shift() as Environment;
      if (e.state === waitingState(kind)) env = e;
    }
    // Refill a moment later: starting a sandbox costs the event loop and a core some milliseconds, which would
    // otherwise land on the cold start that took this cell.
    setTimeout(() => this.refill(kind, runtimeId), REFILL_DELAY_MS).unref();
    return env;
  }

  /** The mounts that make `codeDir` the stem's /var/task and `optDir` (its layers, if any) its /opt, read-only. */
  mountCode(env: Environment, codeDir: string, optDir?: string): () => Promise<void> {
    return this.mountAll(env, { task: codeDir, ...(optDir === undefined ? {} : { opt: optDir }) });
  }

  /** The same for a restore cell, and `snapshotDir` as its /var/snapshot. */
  mountRestore(env: Environment, codeDir: string, snapshotDir: string, optDir?: string): () => Promise<void> {
    return this.mountAll(env, { task: codeDir, snapshot: snapshotDir, ...(optDir === undefined ? {} : { opt: optDir }) });
  }

  private mountAll(env: Environment, sources: Partial<Record<'task' | 'opt' | 'snapshot', string>>): () => Promise<void> {
    const dir = join(this.root, env.id);
    return async () => {
      await Promise.all(Object.entries(sources).map(([sub, host]) => this.mounter.bindReadOnly(host, join(dir, sub))));
    };
  }

  /** Ready cells wanted per kind and runtime: one, plus one per five cold starts in the last minute. */
  private target(k: string): number {
    const recent = (this.coldStarts.get(k) ?? []).filter((t) => Date.now() - t < 60_000).length;
    return Math.min(this.maxPerRuntime, 1 + Math.floor(recent / 5));
  }

  /** Have at least one cell of this kind and runtime ready (for example when a version with SnapStart is published). */
  warm(kind: CellKind, runtimeId: string): void {
    this.refill(kind, runtimeId);
  }

  private refill(kind: CellKind, runtimeId: string): void {
    const k = `${kind}:${runtimeId}`;
    if (this.closed || (this.starting.get(k) ?? 0) > 0) return;
    const have = this.ready.get(k)?.filter((e) => e.state === waitingState(kind)).length ?? 0;
    if (have >= this.target(k)) return;
    const runtime = this.runtimes.get(runtimeId);
    if (runtime === undefined) return;
    this.starting.set(k, 1);
    void this.startOne(kind, runtime).finally(() => {
      this.starting.set(k, 0);
      const failures = this.failures.get(k) ?? 0;
      if (failures === 0) this.refill(kind, runtimeId);
      else if (failures < 5) setTimeout(() => this.refill(kind, runtimeId), 1000 * failures).unref();
    });
  }

  private async startOne(kind: CellKind, runtime: RuntimeDef): Promise<void> {
    const k = `${kind}:${runtime.id}`;
    let env: Environment | undefined;
    let dir = '';
    try {
      env = this.make(runtime, () => void this.release(kind, dir));
      dir = join(this.root, env.id);
      await mkdir(dir, { mode: 0o755 });
      await Promise.all(subdirs(kind).map((sub) => mkdir(join(dir, sub), { mode: 0o755 })));
      if (kind === 'stem') await env.startStem(join(dir, 'task'), STEM_LIMITS, join(dir, 'opt'));
      else await env.startCell(dir, STEM_LIMITS);
      if (this.closed) {
        await env.stop();
        return;
      }
      let list = this.ready.get(k);
      if (list === undefined) this.ready.set(k, (list = []));
      list.push(env);
      this.failures.set(k, 0);
    } catch (err) {
      this.failures.set(k, (this.failures.get(k) ?? 0) + 1);
      this.logger.warn({ err, runtime: runtime.id, kind }, 'cell failed to start; discarded');
      await env?.stop();
    }
  }

  /** After an environment that began as a cell stops: unmount what was mounted into it and remove its directories. */
  private async release(kind: CellKind, dir: string): Promise<void> {
    if (dir === '') return;
    // rmdir, never a recursive delete: if an unmount failed, what is below may be a function's code. A
    // directory nothing was mounted on (no layers, a cell that never restored) fails to unmount: fine.
    for (const sub of subdirs(kind)) {
      await this.mounter.unmount(join(dir, sub)).catch(() => undefined);
      await rmdir(join(dir, sub)).catch(() => undefined);
    }
    await rmdir(dir).catch(() => undefined);
  }

  /** Cells waiting, of one kind or all. */
  readyCount(kind?: CellKind): number {
    let n = 0;
    for (const [k, l] of this.ready) {
      const kk = k.slice(0, k.indexOf(':')) as CellKind;
      if (kind === undefined || kk === kind) n += l.filter((e) => e.state === waitingState(kk)).length;
    }
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(all.map((e) => e.stop()));
    this.mounter.close();
    await run('umount', ['-l', this.root]).catch(() => undefined);
    await rmdir(this.root).catch(() => undefined);
  }
}
