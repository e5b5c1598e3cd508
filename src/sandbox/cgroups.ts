import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir, stat, writeFile, access } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThawError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/**
 * Per-environment cgroups: memory, pids and cpu limits, peak memory, OOM detection, kill-everything.
 *
 * v1 (legacy or hybrid hosts): one directory per controller, `<mount>/<own cgroup>/thaw/<id>`, i.e. nested
 * under the cgroup Thaw itself runs in, so a service manager's limits on Thaw still cover its sandboxes.
 * v2 (unified): `<mount>/thaw/<id>`; a v2 cgroup that holds processes cannot delegate controllers to
 * children, so the default parent hangs off the root (override with `parent`).
 *
 * A process joins before it runs user code: drivers spawn through `/bin/sh -c '<joinScript> && exec "$@"'`,
 * so the pid that gets written to cgroup.procs is the pid that later execs the workload (~1 ms).
 */

export type CgroupVersion = 1 | 2;
export type Controller = 'memory' | 'pids' | 'cpu' | 'freezer' | 'cpuacct';
/** Limits: a warning names the ones missing. */
const CONTROLLERS: readonly Controller[] = ['memory', 'pids', 'cpu'];
/** v1 only: freezing idle environments and reading their CPU time (v2 has both in every cgroup). */
const V1_EXTRA: readonly Controller[] = ['freezer', 'cpuacct'];
/** The share of the host's pid_max / threads-max that all sandboxes together may use (the parent's pids.max). */
export const ACCOUNT_PIDS_SHARE = 0.5;

export interface CgroupLimits {
  readonly memoryBytes: number;
  readonly pids: number;
  /** cgroup v1 cpu.shares semantics (1024 = one share); converted to cpu.weight on v2. */
  readonly cpuShares: number;
}

export interface CgroupOptions {
  readonly logger: Logger;
  /** Force a version instead of detecting it (tests; hybrid hosts). */
  readonly version?: CgroupVersion;
  /** Parent cgroup path, relative to each hierarchy's root, e.g. '/thaw'. */
  readonly parent?: string;
}

interface Mount {
  readonly point: string;
  readonly root: string;
}

const POLL_MS = 2;
const EMPTY_TIMEOUT_MS = 10_000;

/** Cached per (version, parent): detection runs, and its warning is logged, once per process. */
const detections = new Map<string, Promise<CgroupManager | null>>();

/**
 * Find usable cgroups, or resolve null (after one warning) when they are not writable, in which case
 * callers run without limits.
 */
export function detectCgroups(opts: CgroupOptions): Promise<CgroupManager | null> {
  const key = `${opts.version ?? 'auto'}:${opts.parent ?? ''}`;
  let found = detections.get(key);
  if (found === undefined) {
    found = detect(opts);
    detections.set(key, found);
  }
  return found;
}

async function detect(opts: CgroupOptions): Promise<CgroupManager | null> {
  const log = opts.logger;
  try {
    const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
    const own = parseProcCgroup(await readFile('/proc/self/cgroup', 'utf8'));
    const version: CgroupVersion | null =
      opts.version ?? (mounts.v1.has('memory') ? 1 : mounts.v2 !== undefined ? 2 : null);
    if (version === null) throw new Error('no cgroup filesystem mounted');
    const manager =
      version === 1 ? await setupV1(mounts.v1, own, opts.parent) : await setupV2(mounts.v2, opts.parent);
    const missing = CONTROLLERS.filter((c) => !manager.controllers.has(c));
    if (missing.length > 0) {
      log.warn({ version, missing }, 'sandbox cgroup controllers unavailable: those limits are not enforced');
    }
    await manager.probe();
    void manager.sweep();
    void manager.thawOrphans();
    log.debug({ version, parents: manager.parents }, 'sandbox cgroups ready');
    return manager;
  } catch (err) {
    log.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'cgroups are not writable: sandboxes run WITHOUT memory, pids and cpu limits and without OOM detection',
    );
    return null;
  }
}

/** A sysfs file's content, or `fallback` when it cannot be read. */
function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}

function parseMountinfo(text: string): { v1: Map<string, Mount>; v2: Mount | undefined } {
  const v1 = new Map<string, Mount>();
  let v2: Mount | undefined;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const f = left.split(' ');
    const [fstype, , superOpts = ''] = right.split(' ');
    const root = unescapeMount(f[3] ?? '/');
    const point = unescapeMount(f[4] ?? '');
    if (fstype === 'cgroup2') {
      // Prefer the canonical unified mount when several exist.
      if (v2 === undefined || point === '/sys/fs/cgroup') v2 = { point, root };
    } else if (fstype === 'cgroup') {
      for (const opt of superOpts.split(',')) {
        if ([...CONTROLLERS, ...V1_EXTRA].includes(opt as Controller) && !v1.has(opt)) v1.set(opt, { point, root });
      }
    }
  }
  return { v1, v2 };
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Map controller name (or '' for v2) to this process's cgroup path. */
function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    for (const c of (m[1] ?? '').split(',')) out.set(c, m[2] ?? '/');
  }
  return out;
}

/** Path of `cgroupPath` below a mount whose root may itself be a sub-cgroup (containers). */
function underMount(mount: Mount, cgroupPath: string): string {
  const rel =
    mount.root !== '/' && (cgroupPath === mount.root || cgroupPath.startsWith(mount.root + '/'))
      ? cgroupPath.slice(mount.root.length)
      : cgroupPath;
  return join(mount.point, rel);
}

async function setupV1(
  mounts: Map<string, Mount>,
  own: Map<string, string>,
  parent: string | undefined,
): Promise<CgroupManager> {
  const parents = new Map<Controller, string>();
  for (const c of [...CONTROLLERS, ...V1_EXTRA]) {
    const mount = mounts.get(c);
    if (mount === undefined) continue;
    const dir = underMount(mount, parent ?? join(own.get(c) ?? '/', 'thaw'));
    await mkdir(dir, { recursive: true });
    parents.set(c, dir);
  }
  if (!parents.has('memory')) throw new Error('cgroup v1 memory controller is not mounted');
  capAccountPids(parents.get('pids'));
  return new CgroupManager(1, parents);
}

async function setupV2(mount: Mount | undefined, parent: string | undefined): Promise<CgroupManager> {
  if (mount === undefined) throw new Error('cgroup v2 is not mounted');
  const dir = underMount(mount, parent ?? '/thaw');
  await mkdir(dir, { recursive: true });
  // Enable each controller on every level from the mount down to the parent (a level that already
  // has it is a no-op). One controller failing (not available, not delegated) leaves the others.
  const levels = [mount.point];
  for (const part of relative(mount.point, dir).split('/')) {
    if (part !== '') levels.push(join(levels[levels.length - 1] ?? mount.point, part));
  }
  const parents = new Map<Controller, string>();
  for (const c of CONTROLLERS) {
    let ok = true;
    for (const level of levels) {
      try {
        await writeFile(join(level, 'cgroup.subtree_control'), `+${c}`);
      } catch {
        ok = false;
        break;
      }
    }
    if (ok) parents.set(c, dir);
  }
  capAccountPids(parents.get('pids'));
  return new CgroupManager(2, parents, dir);
}

/**
 * The host's own limits on tasks: pid_max and threads-max (each thread takes a pid). A sandbox's pids.max
 * bounds one environment; the parent's, written here, bounds all of them together, so environments × their
 * pids.max can exceed the host's pids without the host running out.
 */
export function accountPidsMax(share = ACCOUNT_PIDS_SHARE): number {
  const pidMax = Number(readOr('/proc/sys/kernel/pid_max', '32768'));
  const threadsMax = Number(readOr('/proc/sys/kernel/threads-max', String(pidMax)));
  const host = Math.min(pidMax > 0 ? pidMax : 32768, threadsMax > 0 ? threadsMax : pidMax);
  return Math.max(64, Math.floor(host * share));
}

/** Lambda's process and thread limit per execution environment. */
export const LAMBDA_PIDS = 1024;

/**
 * The pids.max of each environment of a server that runs at most `maxEnvironments` of them (plus up to `extra`
 * stem cells, restore cells and code-cache producers, and one snapshot build of LAMBDA_PIDS): Lambda's 1,024 when
 * the account's share of the host's pids holds that many for every one, else an equal share (at least 64), so that
 * no environment, idle or busy, can take the pids another one is due.
 */
export function environmentPids(maxEnvironments: number, extra = 16, account = accountPidsMax()): number {
  const share = Math.floor((account - LAMBDA_PIDS) / (maxEnvironments + extra));
  return Math.max(64, Math.min(LAMBDA_PIDS, share));
}

/** Set the parent's pids.max (lowering only: an operator's tighter cap stays). Best effort. */
function capAccountPids(dir: string | undefined): void {
  if (dir === undefined) return;
  const file = join(dir, 'pids.max');
  const want = accountPidsMax();
  const now = readOr(file, 'max');
  if (now !== 'max' && Number(now) <= want) return;
  try {
    writeFileSync(file, String(want));
  } catch {
    // Not ours to change (delegated hierarchy): each environment's own pids.max still applies.
  }
}

export class CgroupManager {
  readonly controllers: ReadonlySet<Controller>;

  /** @param v2dir the single v2 parent directory (v2 only); v1 keeps one parent per controller. */
  constructor(
    readonly version: CgroupVersion,
    private readonly parentDirs: ReadonlyMap<Controller, string>,
    private readonly v2dir?: string,
  ) {
    this.controllers = new Set(parentDirs.keys());
  }

  get parents(): string[] {
    return this.version === 2 && this.v2dir !== undefined ? [this.v2dir] : [...new Set(this.parentDirs.values())];
  }

  /** Create and remove a throwaway child, proving that we may create cgroups and move processes. */
  async probe(): Promise<void> {
    const cg = await this.create(`probe-${process.pid}-${Date.now().toString(36)}`, {
      memoryBytes: 64 * 1024 * 1024,
      pids: 64,
      cpuShares: 1024,
    });
    await cg.remove();
  }

  /**
   * Remove environment cgroups that a killed Thaw left behind: empty, and older than `olderThanMs` (another
   * Thaw on this host may be between creating a cgroup and moving its sandbox in). Best effort; returns the
   * number of directories removed (one per controller on cgroup v1).
   */
  async sweep(olderThanMs = 10 * 60 * 1000, only: (id: string) => boolean = () => true): Promise<number> {
    let removed = 0;
    for (const { name, dir } of await this.environmentDirs()) {
      if (!only(name)) continue;
      try {
        const st = await stat(dir);
        if (!st.isDirectory() || Date.now() - st.mtimeMs < olderThanMs) continue;
        if ((await readFile(join(dir, 'cgroup.procs'), 'utf8')).trim() !== '') continue;
        await rmdir(dir);
        removed++;
      } catch {
        // In use, already gone, or not a cgroup: leave it.
      }
    }
    return removed;
  }

  /** Every environment cgroup directory below the parents (one per controller on cgroup v1). */
  private async environmentDirs(): Promise<{ name: string; dir: string }[]> {
    const out: { name: string; dir: string }[] = [];
    for (const parent of this.parents) {
      const names = await readdir(parent).catch(() => [] as string[]);
      for (const name of names) if (/^[a-z0-9][a-z0-9-]*$/.test(name)) out.push({ name, dir: join(parent, name) });
    }
    return out;
  }

  /**
   * Kill environments left frozen by a Thaw that died: a frozen task does not act even on the SIGKILL that
   * bwrap's --die-with-parent queued for it, so without this they would hold their pids and memory forever. A
   * frozen cgroup is orphaned when none of its processes has a parent outside it other than pid 1 (the owner's
   * node process is that parent while it lives). Returns the number of cgroups thawed and killed.
   */
  async thawOrphans(): Promise<number> {
    let n = 0;
    // As pid 1 (a container's init) this process is itself the parent that orphans get: no way to tell.
    if (process.pid === 1) return 0;
    for (const { dir } of await this.environmentDirs()) {
      const frozen = this.version === 1 ? !['THAWED', ''].includes(readOr(join(dir, 'freezer.state'), '')) : readOr(join(dir, 'cgroup.freeze'), '0') === '1';
      if (!frozen) continue;
      const pids = readOr(join(dir, 'cgroup.procs'), '').split('\n').filter((l) => l !== '').map(Number);
      const inside = new Set(pids);
      const owners = pids.map(parentPid).filter((pp) => pp !== undefined && !inside.has(pp) && pp > 1);
      if (pids.length > 0 && owners.length > 0) continue;
      try {
        writeFileSync(join(dir, this.version === 1 ? 'freezer.state' : 'cgroup.freeze'), this.version === 1 ? 'THAWED' : '0');
      } catch {
        continue;
      }
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone.
        }
      }
      n++;
    }
    return n;
  }

  /** Create the cgroup of one environment with its limits applied. */
  async create(id: string, limits: CgroupLimits): Promise<Cgroup> {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(id)) throw new ThawError('Service', `invalid sandbox id ${JSON.stringify(id)}`);
    const dirs = new Map<Controller, string>();
    if (this.version === 2 && this.v2dir !== undefined) {
      const dir = join(this.v2dir, id);
      for (const c of this.controllers) dirs.set(c, dir);
      const cg = new Cgroup(id, 2, dirs, [dir]);
      await makeFresh(cg, dir);
      await cg.applyLimits(limits);
      return cg;
    }
    for (const [c, parent] of this.parentDirs) dirs.set(c, join(parent, id));
    const cg = new Cgroup(id, 1, dirs, [...new Set(dirs.values())]);
    for (const dir of cg.dirs) await makeFresh(cg, dir);
    await cg.applyLimits(limits);
    return cg;
  }
}

/** mkdir, replacing a stale cgroup of the same id left behind by a crashed process. */
async function makeFresh(cg: Cgroup, dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    await cg.killAll();
    await rmdirRetry(dir);
    await mkdir(dir);
  }
}

async function rmdirRetry(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 200) throw err;
      await sleep(5);
    }
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The parent pid of a process, from /proc; undefined when it is gone. */
function parentPid(pid: number): number | undefined {
  const stat = readOr(`/proc/${pid}/stat`, '');
  if (stat === '') return undefined;
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

/** cgroup v1 cpu.shares → v2 cpu.weight (the conversion systemd and the OCI runtimes use). */
export function sharesToWeight(shares: number): number {
  const s = Math.min(Math.max(Math.round(shares), 2), 262144);
  return Math.min(Math.max(1 + Math.round(((s - 2) * 9999) / 262142), 1), 10000);
}

/** One environment's cgroup (one directory per controller on v1, one directory on v2). */
export class Cgroup {
  private peak = 0;
  private oom = false;
  /** Set once the directories are about to go: the getters then return the last values read. */
  private frozen = false;
  private removed: Promise<void> | undefined;
  private sampler: NodeJS.Timeout | undefined;
  /** The last value written to each limit file. */
  private readonly written = new Map<string, string>();

  constructor(
    readonly id: string,
    readonly version: CgroupVersion,
    private readonly byController: ReadonlyMap<Controller, string>,
    /** Every distinct directory of this cgroup. */
    readonly dirs: readonly string[],
  ) {}

  /** Shell commands that move the shell itself (`$$`) into this cgroup; chain with `&& exec "$@"`. */
  joinScript(): string {
    return this.dirs.map((d) => `echo $$ > ${shellQuote(join(d, 'cgroup.procs'))}`).join(' && ');
  }

  private file(c: Controller, name: string): string | undefined {
    const dir = this.byController.get(c);
    return dir === undefined ? undefined : join(dir, name);
  }

  /**
   * Set the limits; also raises or lowers them on a running cgroup. A no-op once removed. The writes are
   * synchronous: each is a few microseconds of sysfs work, far less than a round trip through libuv's thread
   * pool, and this sits on the cold-start path of a stem cell. Values already in place are not written again.
   */
  async applyLimits(limits: CgroupLimits): Promise<void> {
    if (this.removed !== undefined) return;
    const w = (c: Controller, name: string, value: string | number, optional = false): void => {
      const f = this.file(c, name);
      if (f === undefined) return;
      const text = String(value);
      if (this.written.get(f) === text) return;
      try {
        writeFileSync(f, text);
        this.written.set(f, text);
      } catch (err) {
        this.written.delete(f);
        if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw new ThawError('Service', `cannot set ${name} on sandbox cgroup ${this.id}`, { file: f }, { cause: err });
      }
    };
    const mem = Math.max(Math.floor(limits.memoryBytes), 4096);
    const pids = Math.max(Math.floor(limits.pids), 1);
    if (this.version === 1) {
      // memsw (memory+swap) must be >= the memory limit; equal means swap cannot be used to dodge it. Raising
      // a running cgroup's limit must raise memsw first, lowering it must lower memory first.
      const memsw = this.file('memory', 'memory.memsw.limit_in_bytes');
      const known = memsw === undefined ? undefined : this.written.get(memsw);
      const current = memsw === undefined ? Number.POSITIVE_INFINITY : Number(known ?? readOr(memsw, 'Infinity'));
      if (mem > current) w('memory', 'memory.memsw.limit_in_bytes', mem, true);
      w('memory', 'memory.limit_in_bytes', mem);
      w('memory', 'memory.memsw.limit_in_bytes', mem, true);
      w('pids', 'pids.max', pids);
      w('cpu', 'cpu.shares', Math.max(Math.round(limits.cpuShares), 2));
    } else {
      w('memory', 'memory.max', mem);
      w('memory', 'memory.swap.max', 0, true);
      w('pids', 'pids.max', pids);
      w('cpu', 'cpu.weight', sharesToWeight(limits.cpuShares));
      const hasPeak = await access(this.file('memory', 'memory.peak') ?? '/nonexistent').then(
        () => true,
        () => false,
      );
      if (this.byController.has('memory') && !hasPeak && this.sampler === undefined) {
        // Kernels before 5.19 have no memory.peak: sample memory.current instead.
        this.sampler = setInterval(() => this.maxMemoryBytes(), 50);
        this.sampler.unref();
      }
    }
  }

  /** Peak memory of the whole cgroup in bytes (synchronous: a sysfs read). Kept after removal. */
  maxMemoryBytes(): number {
    if (this.frozen) return this.peak;
    const read = (name: string): number | undefined => {
      const f = this.file('memory', name);
      if (f === undefined) return undefined;
      try {
        const n = Number(readFileSync(f, 'utf8').trim());
        return Number.isFinite(n) ? n : undefined;
      } catch {
        return undefined;
      }
    };
    const now =
      this.version === 1 ? read('memory.max_usage_in_bytes') : (read('memory.peak') ?? read('memory.current'));
    if (now !== undefined && now > this.peak) this.peak = now;
    return this.peak;
  }

  /** True once the kernel OOM killer has killed a process in this cgroup. Kept after removal. */
  oomKilled(): boolean {
    if (this.frozen || this.oom) return this.oom;
    const name = this.version === 1 ? 'memory.oom_control' : 'memory.events';
    const f = this.file('memory', name);
    if (f === undefined) return false;
    try {
      const text = readFileSync(f, 'utf8');
      const m = /^oom_kill (\d+)$/m.exec(text);
      if (m !== null) {
        this.oom = Number(m[1]) > 0;
      } else if (this.version === 1) {
        // Kernels before 4.13 have no oom_kill counter; hitting the hard limit is the closest signal.
        const fail = this.file('memory', 'memory.failcnt');
        this.oom = fail !== undefined && Number(readFileSync(fail, 'utf8').trim()) > 0;
      }
    } catch {
      // Gone or unreadable: keep what we knew.
    }
    return this.oom;
  }

  /** The file that freezes this cgroup and the values that freeze and thaw it; undefined without a freezer. */
  private freezer(): { file: string; frozen: string; thawed: string } | undefined {
    if (this.version === 2) {
      const dir = this.dirs[0];
      return dir === undefined ? undefined : { file: join(dir, 'cgroup.freeze'), frozen: '1', thawed: '0' };
    }
    const file = this.file('freezer', 'freezer.state');
    return file === undefined ? undefined : { file, frozen: 'FROZEN', thawed: 'THAWED' };
  }

  /**
   * Stop every process of the cgroup (v1 freezer.state, v2 cgroup.freeze). One write; the kernel completes the
   * freeze on its own. Returns false when there is no freezer. Frozen processes ignore even SIGKILL on v1 until
   * thawed: kill paths thaw first.
   */
  freeze(): boolean {
    return this.setFrozen(true);
  }

  /** Resume a frozen cgroup: one write. */
  thaw(): boolean {
    return this.setFrozen(false);
  }

  /** Whether the last freeze() has not been undone. */
  get isFrozen(): boolean {
    return this.frozenNow;
  }

  private frozenNow = false;

  private setFrozen(on: boolean): boolean {
    if (this.removed !== undefined && on) return false;
    const f = this.freezer();
    if (f === undefined) return false;
    if (this.frozenNow === on) return true;
    try {
      writeFileSync(f.file, on ? f.frozen : f.thawed);
      this.frozenNow = on;
      return true;
    } catch {
      return false;
    }
  }

  /** CPU time used by the whole cgroup so far, in nanoseconds (v1 cpuacct.usage, v2 cpu.stat usage_usec). */
  cpuUsageNs(): number | undefined {
    if (this.version === 1) {
      const f = this.file('cpuacct', 'cpuacct.usage');
      const n = f === undefined ? NaN : Number(readOr(f, 'NaN'));
      return Number.isFinite(n) ? n : undefined;
    }
    const dir = this.dirs[0];
    const m = dir === undefined ? null : /^usage_usec (\d+)$/m.exec(readOr(join(dir, 'cpu.stat'), ''));
    return m === null ? undefined : Number(m[1]) * 1000;
  }

  /** Pids of every process in the cgroup (union over v1 hierarchies). */
  async procs(): Promise<number[]> {
    const pids = new Set<number>();
    for (const dir of this.dirs) {
      let text: string;
      try {
        text = await readFile(join(dir, 'cgroup.procs'), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const s of text.split('\n')) if (s !== '') pids.add(Number(s));
    }
    return [...pids];
  }

  /** Resolve true once no process is left in the cgroup, false after `timeoutMs`. */
  async waitEmpty(timeoutMs = EMPTY_TIMEOUT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      if ((await this.procs()).length === 0) return true;
      if (Date.now() > deadline) return false;
      await sleep(delay);
    }
  }

  /** SIGKILL every process in the cgroup, including ones forked while we kill, and wait until it is empty. */
  async killAll(): Promise<void> {
    // A frozen v1 task does not act on SIGKILL until it is thawed.
    this.frozenNow = true;
    this.setFrozen(false);
    const dir = this.dirs[0];
    if (this.version === 2 && dir !== undefined) {
      const killFile = join(dir, 'cgroup.kill');
      try {
        await writeFile(killFile, '1');
        if (await this.waitEmpty()) return;
      } catch {
        // cgroup.kill needs Linux 5.14; fall back to signalling pid by pid.
      }
    }
    const deadline = Date.now() + EMPTY_TIMEOUT_MS;
    for (;;) {
      const pids = await this.procs();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      if (Date.now() > deadline) {
        throw new ThawError('Service', `processes of sandbox ${this.id} survive SIGKILL`, { pids });
      }
      await sleep(POLL_MS);
    }
  }

  /** Kill what is left, record final stats and remove the directories. Idempotent. */
  remove(): Promise<void> {
    this.removed ??= (async () => {
      if (this.sampler !== undefined) clearInterval(this.sampler);
      // Last reads while the files exist; from here on the getters answer from memory.
      this.maxMemoryBytes();
      this.oomKilled();
      this.frozen = true;
      await this.killAll();
      for (const dir of this.dirs) await rmdirRetry(dir);
    })();
    return this.removed;
  }
}
