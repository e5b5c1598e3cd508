import { execFile } from 'node:child_process';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { VersionRecord } from '../control/model.js';
import type { Environment } from './environment.js';
import type { RuntimeDef } from './runtimes.js';
import { Mounter } from './mounter.js';

const run = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The stem's /opt, next to its /var/task on the shared mount. */
const optDirOf = (stemDir: string): string => `${stemDir}.opt`;

/** A stem cell boots with these limits; specialisation applies the function's own. */
export const STEM_LIMITS = { memoryMb: 128, ephemeralMb: 512 } as const;

/**
 * Stem cells: generic runtimes already started inside their sandbox, each waiting with an empty /var/task.
 * The empty directory lives on a tmpfs that Thaw mounts once with shared propagation, so a read-only bind
 * mount of a function's code made onto it on the host appears inside the waiting sandbox. Specialising a
 * stem then costs one mount, a cgroup write and the function's own Init: no process or runtime boot.
 *
 * The pool keeps, per runtime in use, a number of ready stems that follows the recent cold-start rate, refills
 * in the background one at a time, and discards a stem that fails instead of reusing it.
 */
export class StemCells {
  private readonly ready = new Map<string, Environment[]>();
  private readonly starting = new Map<string, number>();
  private readonly coldStarts = new Map<string, number[]>();
  private readonly failures = new Map<string, number>();
  private closed = false;
  private readonly mounter: Mounter;
  /** Read-only mounts of layer directories, by host directory (see readOnlySource). */
  private readonly roSources = new Map<string, Promise<string>>();

  private constructor(
    private readonly root: string,
    private readonly make: (runtime: RuntimeDef, onStopped: () => void) => Environment,
    private readonly runtimes: ReadonlyMap<string, RuntimeDef>,
    private readonly logger: Logger,
    private readonly maxPerRuntime: number,
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
    const cells = new StemCells(root, o.make, o.runtimes, o.logger, o.maxPerRuntime ?? 4);
    for (const id of o.warm ?? []) cells.refill(id);
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
      await StemCells.removeReadOnlySources(`${dir}-ro`);
    }
  }

  private static async removeReadOnlySources(dir: string): Promise<void> {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      await run('umount', ['-l', join(dir, name)]).catch(() => undefined);
      await rmdir(join(dir, name)).catch(() => undefined);
    }
    await rmdir(dir).catch(() => undefined);
  }

  /** Whether a stem can become this version (Node runtimes, default /tmp size, no exec wrapper). */
  eligible(version: VersionRecord, runtime: RuntimeDef): boolean {
    return !this.closed && runtime.family === 'nodejs' && version.config.ephemeralMb === STEM_LIMITS.ephemeralMb
      && version.config.env.AWS_LAMBDA_EXEC_WRAPPER === undefined;
  }

  /** A ready stem of this runtime, if there is one; counts the cold start and refills either way. */
  take(runtimeId: string): Environment | undefined {
    const now = Date.now();
    const recent = (this.coldStarts.get(runtimeId) ?? []).filter((t) => now - t < 60_000);
    recent.push(now);
    this.coldStarts.set(runtimeId, recent);
    let env: Environment | undefined;
    const list = this.ready.get(runtimeId);
    while (list !== undefined && list.length > 0 && env === undefined) {
      const e = list.shift() as Environment;
      if (e.state === 'stem') env = e;
    }
    this.refill(runtimeId);
    return env;
  }

  /** The mounts that make `codeDir` the stem's /var/task and `optDir` (its layers, if any) its /opt, read-only. */
  mountCode(env: Environment, codeDir: string, optDir?: string): () => Promise<void> {
    return async () => {
      await Promise.all([
        this.mounter.bindReadOnly(codeDir, join(this.root, env.id)),
        ...(optDir === undefined ? [] : [this.readOnlySource(optDir).then((ro) => this.mounter.bindReadOnly(ro, optDirOf(join(this.root, env.id))))]),
      ]);
    };
  }

  /**
   * A read-only mount of `dir` in a private place, made once. A bind of a read-only mount is read-only from the
   * start, and so is its copy in the waiting sandbox; a bind made read-only afterwards (mount, then remount) is
   * copied into the sandbox as it was first made, writable.
   */
  private readOnlySource(dir: string): Promise<string> {
    let p = this.roSources.get(dir);
    if (p === undefined) {
      const target = join(`${this.root}-ro`, createHash('sha256').update(dir).digest('hex').slice(0, 32));
      p = (async () => {
        await mkdir(target, { recursive: true, mode: 0o755 });
        await this.mounter.bindReadOnly(dir, target);
        return target;
      })();
      p.catch(() => this.roSources.delete(dir));
      this.roSources.set(dir, p);
    }
    return p;
  }

  /** Ready stems wanted for a runtime: one, plus one per five cold starts in the last minute. */
  private target(runtimeId: string): number {
    const recent = (this.coldStarts.get(runtimeId) ?? []).filter((t) => Date.now() - t < 60_000).length;
    return Math.min(this.maxPerRuntime, 1 + Math.floor(recent / 5));
  }

  private refill(runtimeId: string): void {
    if (this.closed || (this.starting.get(runtimeId) ?? 0) > 0) return;
    const have = this.ready.get(runtimeId)?.filter((e) => e.state === 'stem').length ?? 0;
    if (have >= this.target(runtimeId)) return;
    const runtime = this.runtimes.get(runtimeId);
    if (runtime === undefined) return;
    this.starting.set(runtimeId, 1);
    void this.startOne(runtime).finally(() => {
      this.starting.set(runtimeId, 0);
      const failures = this.failures.get(runtimeId) ?? 0;
      if (failures === 0) this.refill(runtimeId);
      else if (failures < 5) setTimeout(() => this.refill(runtimeId), 1000 * failures).unref();
    });
  }

  private async startOne(runtime: RuntimeDef): Promise<void> {
    let env: Environment | undefined;
    let dir = '';
    try {
      env = this.make(runtime, () => void this.release(dir));
      dir = join(this.root, env.id);
      await mkdir(dir, { mode: 0o755 });
      await mkdir(optDirOf(dir), { mode: 0o755 });
      await env.startStem(dir, STEM_LIMITS, optDirOf(dir));
      if (this.closed) {
        await env.stop();
        return;
      }
      let list = this.ready.get(runtime.id);
      if (list === undefined) this.ready.set(runtime.id, (list = []));
      list.push(env);
      this.failures.set(runtime.id, 0);
    } catch (err) {
      this.failures.set(runtime.id, (this.failures.get(runtime.id) ?? 0) + 1);
      this.logger.warn({ err, runtime: runtime.id }, 'stem cell failed to start; discarded');
      await env?.stop();
    }
  }

  /** After an environment that began as a stem stops: unmount its code and remove its directory. */
  private async release(dir: string): Promise<void> {
    if (dir === '') return;
    for (const d of [dir, optDirOf(dir)]) {
      // An /opt without layers was never mounted on: its unmount fails, and rmdir removes the empty directory.
      await this.mounter.unmount(d).catch(() => undefined);
      await rmdir(d).catch(() => undefined);
    }
  }

  get readyCount(): number {
    let n = 0;
    for (const l of this.ready.values()) n += l.filter((e) => e.state === 'stem').length;
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
    await StemCells.removeReadOnlySources(`${this.root}-ro`);
  }
}
