import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, link, lstat, mkdir, readdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import { ThawError } from '../util/errors.js';
import { symlinkStaysInside } from '../control/zip.js';

/**
 * What an environment sees at /opt: its function's layers, extracted in order and merged, a later layer's file
 * replacing an earlier one's (as Lambda extracts them). One layer is mounted as it lies in the code store; a list
 * of several is merged once into a directory of its own, keyed by the ordered layer contents, and shared by every
 * function version that uses the same list. Files are hard links into the code store where the filesystem allows.
 *
 * The merge never follows a symbolic link on the host, and refuses a result in which a link leads outside /opt
 * (each layer's links stay inside that layer, but one layer's link can redirect another's).
 */
export class OptDirs {
  private readonly pending = new Map<string, Promise<string>>();

  constructor(private readonly root: string, private readonly logger: Logger) {}

  static key(layerShas: readonly string[]): string {
    return createHash('sha256').update(layerShas.join('\n')).digest('hex');
  }

  /** The host directory to mount at /opt for layers whose extracted trees are `trees` (in order). */
  async dir(layerShas: readonly string[], treeOf: (sha256: string) => Promise<string>): Promise<string | undefined> {
    const first = layerShas[0];
    if (first === undefined) return undefined;
    if (layerShas.length === 1) return treeOf(first);
    const key = OptDirs.key(layerShas);
    const dest = join(this.root, key);
    if (await isDir(dest)) return dest;
    let p = this.pending.get(key);
    if (p === undefined) {
      p = Promise.all(layerShas.map(treeOf)).then((trees) => this.merge(trees, dest)).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async merge(trees: readonly string[], dest: string): Promise<string> {
    const started = performance.now();
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmp = `${dest}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(tmp, { mode: 0o755 });
      await chmod(tmp, 0o755);
      for (const tree of trees) await mergeInto(tree, tmp);
      await checkLinks(tmp);
      if (await isDir(dest)) {
        await rm(tmp, { recursive: true, force: true });
        return dest;
      }
      await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    this.logger.debug({ dir: dest, layers: trees.length, ms: Math.round(performance.now() - started) }, 'layers merged for /opt');
    return dest;
  }

  /** Remove merged directories no function version needs any more (`keep`: keys from OptDirs.key). */
  async collect(keep: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      // `<key>.tmp-…` is a merge in progress while its key is pending (and a crash's leftover otherwise).
      const key = name.split('.')[0] ?? name;
      if (keep.has(name) || this.pending.has(key)) continue;
      await rm(join(this.root, name), { recursive: true, force: true });
      removed++;
    }
    return removed;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Copy `src` over `dst` (a real directory): directories merge, anything else replaces what was there. */
async function mergeInto(src: string, dst: string): Promise<void> {
  for (const e of await readdir(src, { withFileTypes: true })) {
    const s = join(src, e.name);
    const d = join(dst, e.name);
    const existing = await lstat(d).catch(() => undefined);
    if (e.isDirectory()) {
      if (existing !== undefined && !existing.isDirectory()) await rm(d, { force: true });
      if (existing === undefined || !existing.isDirectory()) {
        await mkdir(d, { mode: 0o755 });
        await chmod(d, 0o755);
      }
      await mergeInto(s, d);
      continue;
    }
    // rm never follows a link: a link, file or whole directory of an earlier layer goes.
    if (existing !== undefined) await rm(d, { recursive: true, force: true });
    if (e.isSymbolicLink()) {
      await symlink(await readlink(s), d);
    } else if (e.isFile()) {
      try {
        await link(s, d);
      } catch {
        await copyFile(s, d);
        await chmod(d, (await lstat(s)).mode & 0o777);
      }
    }
  }
}

async function checkLinks(root: string): Promise<void> {
  const links = new Map<string, string>();
  const walk = async (parts: string[]): Promise<void> => {
    for (const e of await readdir(join(root, ...parts), { withFileTypes: true })) {
      const p = [...parts, e.name];
      if (e.isDirectory()) await walk(p);
      else if (e.isSymbolicLink()) links.set(p.join('/'), await readlink(join(root, ...p)));
    }
  };
  await walk([]);
  for (const [rel, target] of links) {
    if (!symlinkStaysInside(rel.split('/'), target, links)) {
      throw new ThawError('Service', `The function's layers combine into a symbolic link /opt/${rel} -> ${target} that leads outside /opt`, { link: rel, target });
    }
  }
}
