/**
 * Packaging a folder into a code zip for `thaw deploy`. Everything is included (node_modules is the point), in
 * sorted order with a fixed timestamp, so the same tree always gives the same bytes and the same CodeSha256.
 * Executable bits are kept; symbolic links are stored as links when they stay inside the folder, and refused
 * otherwise (extractZip would refuse them too).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { lstat, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { Pace } from '../util/pace.js';
import { symlinkStaysInside } from './zip.js';
import { ZipWriter } from './zip-writer.js';

export interface ZipProgress {
  /** Regular files and symbolic links written so far, out of totalFiles. */
  files: number;
  totalFiles: number;
  /** File bytes read so far (uncompressed). */
  bytes: number;
}

/** Lambda's CodeSha256: base64 of the SHA-256 of the zip. */
export function sha256Base64(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('base64');
}

/** 1980-01-01 00:00 in local time, which is how DOS timestamps are read: the same bytes in every timezone. */
const FIXED_MTIME = new Date(1980, 0, 1, 0, 0, 0);

type Item =
  | { kind: 'dir'; rel: string }
  | { kind: 'file'; rel: string; abs: string; size: number; executable: boolean }
  | { kind: 'link'; rel: string; target: string };

export async function zipDirectory(dir: string, onProgress?: (p: ZipProgress) => void): Promise<Buffer> {
  const root = await realpath(dir);
  if (!(await lstat(root)).isDirectory()) throw new Error(`${dir} is not a directory`);
  const items: Item[] = [];
  const pace = new Pace();
  await walk(root, [], items, pace);
  items.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  checkLinks(dir, items);

  const zip = new ZipWriter(FIXED_MTIME);
  const totalFiles = items.filter((i) => i.kind !== 'dir').length;
  const progress = { files: 0, totalFiles, bytes: 0 };
  onProgress?.({ ...progress });
  for (const item of items) {
    if (item.kind === 'dir') {
      zip.directory(item.rel, 0o40755);
      continue;
    }
    let data: Buffer;
    if (item.kind === 'link') data = Buffer.from(item.target);
    else {
      try {
        // Small files are read on this thread: a package of many tiny files is not a thread-pool round trip each.
        data = item.size <= SYNC_READ_BYTES ? readFileSync(item.abs) : await readFile(item.abs);
      } catch (e) {
        throw new Error(`reading ${path.join(dir, item.rel)}: ${(e as Error).message}`, { cause: e });
      }
      if (data.length !== item.size) throw new Error(`${path.join(dir, item.rel)} changed size while it was packaged`);
    }
    await zip.file(item.rel, item.kind === 'link' ? 0o120777 : item.executable ? 0o100755 : 0o100644, data);
    progress.files++;
    progress.bytes += data.length;
    onProgress?.({ ...progress });
    await pace.breathe();
  }
  return zip.finish();
}

const SYNC_READ_BYTES = 256 * 1024;

async function walk(root: string, relParts: string[], out: Item[], pace: Pace): Promise<void> {
  const abs = path.join(root, ...relParts);
  for (const name of readdirSync(abs)) {
    const parts = [...relParts, name];
    const rel = parts.join('/');
    const p = path.join(abs, name);
    // Zip readers (ours included) take a backslash for a separator, so such a name would not come back as itself.
    if (name.includes('\\')) throw new Error(`${p}: file names containing a backslash cannot be packaged`);
    const st = lstatSync(p);
    if (st.isDirectory()) {
      out.push({ kind: 'dir', rel });
      await walk(root, parts, out, pace);
    } else if (st.isFile()) {
      out.push({ kind: 'file', rel, abs: p, size: st.size, executable: (st.mode & 0o111) !== 0 });
    } else if (st.isSymbolicLink()) {
      out.push({ kind: 'link', rel, target: linkTarget(root, p, readlinkSync(p)) });
    } else {
      throw new Error(`${p} is not a regular file, directory or symbolic link; remove it before packaging`);
    }
    await pace.breathe();
  }
}

/** An absolute target inside the folder is stored relative to the link; one outside is refused. */
function linkTarget(root: string, link: string, raw: string): string {
  if (!path.isAbsolute(raw)) return raw;
  const resolved = path.resolve(raw);
  if (resolved !== root && !resolved.startsWith(root + path.sep)) throw linkOutside(link, raw);
  return path.relative(path.dirname(link), resolved) || '.';
}

function checkLinks(dir: string, items: Item[]): void {
  const links = new Map<string, string>();
  for (const i of items) if (i.kind === 'link') links.set(i.rel, i.target);
  for (const [rel, target] of links) {
    if (!symlinkStaysInside(rel.split('/'), target, links)) throw linkOutside(path.join(dir, rel), target);
  }
}

function linkOutside(link: string, target: string): Error {
  return new Error(
    `symbolic link ${link} points to ${target}, outside the folder being packaged; ` +
      'Lambda code cannot reach outside its package, so replace the link with a copy of what it points to',
  );
}
