import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Bytes of an extracted package as Lambda counts its unzipped size: regular files by length, symbolic links by
 * the length of their target. Never follows a link.
 */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const pending = [dir];
  for (let d = pending.pop(); d !== undefined; d = pending.pop()) {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) pending.push(p);
      else if (entry.isFile() || entry.isSymbolicLink()) total += (await lstat(p)).size;
    }
  }
  return total;
}
