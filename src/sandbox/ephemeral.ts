import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, lstat, mkdir, open, readFile, readdir, rename, rmdir, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ThawError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';

const run = promisify(execFile);

/**
 * /tmp as Lambda's EphemeralStorage: per environment, a sparse image file on disk holding an ext4 filesystem of
 * exactly the configured size, loop-mounted nosuid,nodev. Its pages are page cache, reclaimable, never a hard
 * charge to the function's memory limit as a tmpfs is; writing past the size fails with ENOSPC inside the
 * function.
 *
 * Layout: `dir` (root, 0700) holds `<id>.img` (0600) and the mount point `<id>/`. The host view exists only
 * while the sandbox starts: once bubblewrap has bound the filesystem at /tmp, detach() unmounts it lazily on
 * the host and unlinks the image, so the filesystem lives on only in the sandbox's mount namespace and the
 * kernel frees it (loop device, image blocks) when the environment's last process ends, even if the server is
 * killed. What a killed server leaves in `dir` (a mount made and not yet handed over) is removed by clean() at
 * the next start. Host code never opens, lists or follows anything inside the mounted filesystem.
 *
 * Admission: images are sparse, so the space of every live one is committed up front: a new image is made only
 * while the filesystem holding `dir` keeps, after the unwritten rest of every live image and the new one, at
 * least `reserveBytes` free. A function filling its /tmp then cannot fill the host's disk.
 *
 * Spares: a few filesystems of the common size (Lambda's default 512 MB) are kept made and mounted ahead, root's
 * until one is taken; taking one costs a chown and a rename, so a start of that size pays no mkfs or mount.
 */

/** The filesystem's root directory inside the sandbox: owned by the sandbox user, sticky and world-writable. */
const ROOT_MODE = 0o1777;
const MIN_BYTES = 1024 * 1024;
const TMPFS_MAGIC = 0x01021994;
const REFILL_DELAY_MS = 1000;
const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

export interface EphemeralStorageOptions {
  /** Directory for images and mount points, on a disk (not a tmpfs). Created root-owned, mode 0700. */
  readonly dir: string;
  readonly logger?: Logger;
  /** Free space always left on the filesystem of `dir`. Default 1 GiB. */
  readonly reserveBytes?: number;
  /** Filesystems of `spareBytes` kept ready. Default 0. */
  readonly spares?: number;
  /** Default 512 MiB. */
  readonly spareBytes?: number;
}

export interface EphemeralOwner {
  readonly uid: number;
  readonly gid: number;
}

/** The ephemeral storage directory of a server: DATA/ephemeral, or below an operator's directory, one per data directory. */
export function ephemeralDirFor(dataDir: string, given?: string): string {
  if (given === undefined || given === '') return join(dataDir, 'ephemeral');
  return join(given, `thaw-${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`);
}

export class EphemeralStorage {
  private readonly live = new Set<EphemeralDisk>();
  private readonly log: Logger;
  private readonly reserve: number;
  private readonly spareCount: number;
  private readonly spareBytes: number;
  private readonly spares: EphemeralDisk[] = [];
  private refilling: Promise<void> | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(readonly dir: string, o: EphemeralStorageOptions) {
    this.log = o.logger ?? silentLogger;
    this.reserve = o.reserveBytes ?? 1024 * 1024 * 1024;
    this.spareCount = o.spares ?? 0;
    this.spareBytes = imageSize(o.spareBytes ?? 512 * 1024 * 1024);
  }

  /**
   * Prepare `dir`, remove what a killed server left in it, and make one tiny filesystem to check that this host
   * can (root, loop devices, mkfs.ext4). Undefined, with a warning, when it cannot.
   */
  static async open(o: EphemeralStorageOptions): Promise<EphemeralStorage | undefined> {
    const log = o.logger ?? silentLogger;
    const s = new EphemeralStorage(o.dir, o);
    try {
      if (process.getuid?.() !== 0) throw new Error('not running as root');
      await mkdir(o.dir, { recursive: true, mode: 0o700 });
      const st = await lstat(o.dir);
      if (!st.isDirectory() || st.uid !== 0) throw new Error('not a directory owned by root');
      await chmod(o.dir, 0o700);
      if ((await statfs(o.dir)).type === TMPFS_MAGIC) {
        log.warn({ dir: o.dir }, 'the /tmp images are on a tmpfs: what functions write to /tmp takes host memory; choose a directory on a disk');
      }
      await s.clean();
      const probe = await s.create(`probe-${process.pid}`, MIN_BYTES, { uid: 0, gid: 0 });
      await probe.release();
      s.refill();
    } catch (err) {
      log.warn({ err, dir: o.dir }, 'disk-backed /tmp unavailable: /tmp is a tmpfs charged to each function\'s memory');
      return undefined;
    }
    return s;
  }

  /**
   * Remove leftovers of a server that was killed: unmount (lazily) every mount below `dir`, then delete image
   * files and empty mount points. Never a recursive delete: a directory that is still not empty is left alone.
   */
  async clean(): Promise<{ unmounted: number; removed: number }> {
    let unmounted = 0;
    let removed = 0;
    const mounts = parseMountPoints(await readFile('/proc/self/mountinfo', 'utf8'))
      .filter((p) => p.startsWith(this.dir + '/'))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) {
      try {
        await run('umount', ['-l', m], { env: TOOL_ENV });
        unmounted++;
      } catch (err) {
        this.log.warn({ err, mount: m }, 'cannot unmount a leftover /tmp filesystem');
      }
    }
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      try {
        const st = await lstat(path);
        if (st.isDirectory()) await rmdir(path);
        else if (name.endsWith('.img') && st.isFile()) await unlink(path);
        else continue;
        removed++;
      } catch (err) {
        this.log.warn({ err, path }, 'cannot remove a leftover /tmp image');
      }
    }
    if (unmounted + removed > 0) this.log.info({ dir: this.dir, unmounted, removed }, 'leftover /tmp filesystems removed');
    return { unmounted, removed };
  }

  /** Make and mount the /tmp filesystem of environment `id` ([a-z0-9-]), `bytes` large, its root owned by `owner`. */
  async create(id: string, bytes: number, owner: EphemeralOwner): Promise<EphemeralDisk> {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(id)) throw new ThawError('Service', `invalid ephemeral storage id ${JSON.stringify(id)}`);
    const size = imageSize(bytes);
    const spare = size === this.spareBytes ? this.spares.shift() : undefined;
    if (spare !== undefined) {
      this.refillSoon();
      try {
        await spare.adopt(id, owner);
        return spare;
      } catch (err) {
        this.log.warn({ err, id }, 'a spare /tmp filesystem could not be taken; making one');
        await spare.release();
      }
    }
    return this.make(id, size, owner);
  }

  /** Spares made and waiting to be taken. */
  get sparesReady(): number {
    return this.spares.length;
  }

  /**
   * Release the spares; no more are made. Filesystems still in the host's tree (a sandbox start the server's
   * shutdown cut short) are detached too: a sandbox that has one bound keeps it until it ends.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.refillTimer);
    await this.refilling;
    await Promise.all([...this.spares.splice(0).map((d) => d.release()), ...[...this.live].map((d) => d.detach())]);
  }

  /**
   * Refill a little later: mkfs and mount(8) right away would compete with the very start that took the spare
   * (CPU, and the kernel's mount locks bwrap needs to build its namespace).
   */
  private refillSoon(): void {
    if (this.refillTimer !== undefined || this.closed) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.refill();
    }, REFILL_DELAY_MS);
    this.refillTimer.unref();
  }

  /** Make spares up to the count, one at a time, in the background. */
  private refill(): void {
    if (this.refilling !== undefined || this.closed || this.spares.length >= this.spareCount) return;
    this.refilling = (async () => {
      try {
        while (!this.closed && this.spares.length < this.spareCount) {
          this.spares.push(await this.make(`spare-${randomBytes(6).toString('hex')}`, this.spareBytes, { uid: 0, gid: 0 }));
        }
      } catch (err) {
        this.log.warn({ err }, 'cannot make a spare /tmp filesystem');
      } finally {
        this.refilling = undefined;
      }
    })();
  }

  private async make(id: string, size: number, owner: EphemeralOwner): Promise<EphemeralDisk> {
    const disk = new EphemeralDisk(this.dir, id, size, this.log, (d) => this.live.delete(d));
    // Counted (in full) by every make that starts from now on, so two concurrent ones cannot both take the rest.
    const others = [...this.live];
    this.live.add(disk);
    const fs = await statfs(this.dir).catch((err: unknown) => {
      this.live.delete(disk);
      throw err;
    });
    let committed = size + this.reserve;
    for (const d of others) committed += await d.unwritten();
    if (committed > fs.bavail * fs.bsize) {
      this.live.delete(disk);
      throw new ThawError('ServiceUnavailable', `not enough disk space for a ${Math.round(size / 2 ** 20)} MB /tmp`, {
        dir: this.dir, freeBytes: fs.bavail * fs.bsize, neededBytes: committed,
      });
    }
    try {
      await disk.make(owner);
    } catch (err) {
      await disk.release();
      throw new ThawError('Service', `cannot make the /tmp filesystem of ${id}: ${(err as Error).message}`, { dir: this.dir }, { cause: err });
    }
    return disk;
  }
}

const imageSize = (bytes: number): number => Math.max(MIN_BYTES, Math.floor(bytes / 4096) * 4096);

export class EphemeralDisk {
  /** Host path of the mounted filesystem, until detach(). */
  readonly mountPoint: string;
  private image: string;
  private fh: FileHandle | undefined;
  private detached: Promise<void> | undefined;
  private released: Promise<void> | undefined;

  constructor(
    private readonly dir: string,
    private id: string,
    readonly sizeBytes: number,
    private readonly log: Logger,
    private readonly onReleased: (d: EphemeralDisk) => void,
  ) {
    this.mountPoint = join(dir, id);
    this.image = join(dir, `${id}.img`);
  }

  /** @internal Sparse image, ext4 without a journal (nothing to recover: it never outlives a crash), mounted. */
  async make(owner: EphemeralOwner): Promise<void> {
    // O_EXCL: never reuse or follow something already at this path.
    this.fh = await open(this.image, 'wx', 0o600);
    await this.fh.truncate(this.sizeBytes);
    await mkdir(this.mountPoint, { mode: 0o700 });
    await run('mkfs.ext4', [
      '-q', '-F', '-T', 'default', '-O', '^has_journal', '-m', '0',
      '-E', `lazy_itable_init=1,nodiscard,root_owner=${owner.uid}:${owner.gid}`,
      this.image,
    ], { env: TOOL_ENV });
    // noinit_itable: the image is sparse, so inode tables not yet written already read as zeros; the kernel
    // need not write them in the background.
    await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noinit_itable', this.image, this.mountPoint], { env: TOOL_ENV });
    await chmod(this.mountPoint, ROOT_MODE);
    await rmdir(join(this.mountPoint, 'lost+found'));
  }

  /** @internal A spare becomes environment `id`'s: its root changes owner, its image is renamed after `id`. */
  async adopt(id: string, owner: EphemeralOwner): Promise<void> {
    await chown(this.mountPoint, owner.uid, owner.gid);
    const image = join(this.dir, `${id}.img`);
    // Renamed (not linked), so the loop device names it too. Never over something: the directory is root's alone.
    if (await lstat(image).then(() => true, () => false)) throw new Error(`${image} exists`);
    await rename(this.image, image);
    this.image = image;
    this.id = id;
  }

  /** Bytes of the image not yet written (what it may still take from the host's disk). */
  async unwritten(): Promise<number> {
    if (this.fh === undefined) return this.sizeBytes;
    try {
      const st = await this.fh.stat();
      return Math.max(0, this.sizeBytes - st.blocks * 512);
    } catch {
      return this.sizeBytes;
    }
  }

  /**
   * Take the filesystem out of the host's tree: lazy unmount, then unlink the image and the mount point. Call
   * once the sandbox has bound it; it stays alive there until the sandbox ends. Idempotent; never throws.
   */
  detach(): Promise<void> {
    this.detached ??= (async () => {
      try {
        await run('umount', ['-l', this.mountPoint], { env: TOOL_ENV });
      } catch {
        // Not mounted (a failed make).
      }
      for (const [what, op] of [['mount point', () => rmdir(this.mountPoint)], ['image', () => unlink(this.image)]] as const) {
        try {
          await op();
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, id: this.id, what }, 'cannot remove a /tmp filesystem');
        }
      }
    })();
    return this.detached;
  }

  /** The environment has ended: detach (if not yet) and stop counting the image. Idempotent. */
  release(): Promise<void> {
    this.released ??= (async () => {
      await this.detach();
      await this.fh?.close().catch(() => undefined);
      this.fh = undefined;
      this.onReleased(this);
    })();
    return this.released;
  }
}

/** Mount points (field 5) of /proc/self/mountinfo, with its octal escapes decoded. */
export function parseMountPoints(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined) out.push(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}
