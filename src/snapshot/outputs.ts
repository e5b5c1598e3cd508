import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotBuildError } from './errors.js';

/**
 * Host access to a snapshot build's scratch directory, the only directory the build sandbox can write. Whatever
 * is there was written by (or next to) the function's Init, so it is hostile input:
 * - files are opened with O_NOFOLLOW and O_NONBLOCK (a symlink fails, a FIFO never blocks) and checked on the
 *   open descriptor (fstat): a regular file with one link, within its size limit; everything else is refused;
 * - files are read through that descriptor only, never reopened by name, and never chowned or chmodded;
 * - the host puts its own inputs there with O_CREAT|O_EXCL|O_NOFOLLOW before any sandbox runs, so nothing the
 *   sandbox left can redirect them.
 * The scratch directory itself is created by the host and is the sandbox's mount point, so the sandbox cannot
 * rename or replace it; its parent is the host's alone.
 */

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NOCTTY;

function rejected(name: string, why: string): SnapshotBuildError {
  return new SnapshotBuildError('OutputRejected', `SnapStart refused the build's ${name}: ${why}. Init must not create, link or replace files in the snapshot directory`);
}

/** Open a build output for reading; undefined when it does not exist. Throws SnapshotBuildError('OutputRejected'). */
export async function openOutput(dir: string, name: string, maxBytes: number): Promise<{ fh: FileHandle; size: number } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(join(dir, name), READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw rejected(name, 'it is a symbolic link');
    throw rejected(name, `it cannot be opened (${code ?? 'error'})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw rejected(name, 'it is not a regular file');
    if (st.nlink !== 1) throw rejected(name, 'it is a hard link');
    if (st.size > maxBytes) throw rejected(name, `it is larger than ${maxBytes} bytes`);
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Read a whole build output (at most maxBytes); undefined when it does not exist. */
export async function readOutput(dir: string, name: string, maxBytes: number): Promise<Buffer | undefined> {
  const o = await openOutput(dir, name, maxBytes);
  if (o === undefined) return undefined;
  try {
    const buf = Buffer.alloc(o.size);
    let off = 0;
    while (off < o.size) {
      const { bytesRead } = await o.fh.read(buf, off, o.size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    if (off !== o.size) throw rejected(name, 'it changed while it was read');
    return buf;
  } finally {
    await o.fh.close();
  }
}

/**
 * Copy a build output into a new host file (created here, 0644, never an existing path), hashing it on the
 * way; the copy is synced. Returns undefined when the output does not exist.
 */
export async function copyOutput(dir: string, name: string, dest: string, maxBytes: number): Promise<{ sha256: string; sizeBytes: number } | undefined> {
  const o = await openOutput(dir, name, maxBytes);
  if (o === undefined) return undefined;
  try {
    const out = await open(dest, CREATE_FLAGS, 0o644);
    try {
      const hash = createHash('sha256');
      const buf = Buffer.allocUnsafe(1 << 20);
      let off = 0;
      while (off < o.size) {
        const { bytesRead } = await o.fh.read(buf, 0, Math.min(buf.length, o.size - off), off);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        await out.write(chunk, 0, bytesRead, off);
        off += bytesRead;
      }
      if (off !== o.size) throw rejected(name, 'it changed while it was read');
      await out.sync();
      return { sha256: hash.digest('hex'), sizeBytes: off };
    } finally {
      await out.close();
    }
  } finally {
    await o.fh.close();
  }
}

/** Put a host input into the scratch directory: a new file (never through an existing name or link). */
export async function writeInput(dir: string, name: string, data: string | Uint8Array): Promise<void> {
  const fh = await open(join(dir, name), CREATE_FLAGS, 0o644);
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
}
