import { createHash } from 'node:crypto';
import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, readSync, readdirSync, readlinkSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CHUNK_SIZE } from './seal.js';
import type { ChunkRef, ChunkStore } from './chunk-store.js';
import type { TreeEntry } from './manifest.js';
import { Pace } from '../util/pace.js';

/** Files at least this large start a segment of their own (so they dedup whatever surrounds them). */
export const LARGE_FILE = 128 * 1024;

interface Walked {
  readonly rel: string;
  readonly kind: 'd' | 'f' | 'x' | 'l';
  readonly size: number;
  readonly target?: string;
}

/** Synchronous steps (a tree on tmpfs answers in microseconds), with the event loop given a turn now and then. */
async function walk(root: string, rel: string, out: Walked[], pace: Pace): Promise<void> {
  for (const name of readdirSync(join(root, rel)).sort()) {
    const r = rel === '' ? name : `${rel}/${name}`;
    const st = lstatSync(join(root, r));
    if (st.isDirectory()) {
      out.push({ rel: r, kind: 'd', size: 0 });
      await walk(root, r, out, pace);
    } else if (st.isSymbolicLink()) {
      out.push({ rel: r, kind: 'l', size: 0, target: readlinkSync(join(root, r)) });
    } else if (st.isFile()) {
      out.push({ rel: r, kind: (st.mode & 0o111) !== 0 ? 'x' : 'f', size: st.size });
    }
    await pace.breathe();
  }
}

/**
 * The segment a file is packed in: a large file is its own; otherwise the innermost dependency directory
 * (`node_modules/<pkg>` or `node_modules/@scope/<pkg>`) holding it; otherwise the function's own files ('').
 * Every segment starts on a chunk boundary, so the same dependency in two packages gives the same chunks.
 */
export function segmentOf(rel: string, size: number): string {
  if (size >= LARGE_FILE) return rel;
  const parts = rel.split('/');
  let seg = '';
  for (let i = 0; i < parts.length - 1; i++) {
    if (parts[i] !== 'node_modules') continue;
    const name = parts[i + 1] ?? '';
    const take = name.startsWith('@') ? i + 3 : i + 2;
    if (take <= parts.length - 1) seg = parts.slice(0, take).join('/');
  }
  return seg;
}

/** Cuts a byte stream into chunks, written as they fill; `cut()` ends a segment with a short chunk. */
class ChunkWriter {
  private buf = Buffer.allocUnsafe(CHUNK_SIZE);
  private used = 0;
  offset = 0;
  readonly refs: Promise<ChunkRef>[] = [];
  private inFlight: Promise<unknown>[] = [];

  constructor(private readonly store: ChunkStore, private readonly parallel = 4) {}

  async push(data: Buffer): Promise<void> {
    let at = 0;
    while (at < data.length) {
      const take = Math.min(CHUNK_SIZE - this.used, data.length - at);
      data.copy(this.buf, this.used, at, at + take);
      this.used += take;
      at += take;
      this.offset += take;
      if (this.used === CHUNK_SIZE) await this.cut();
    }
  }

  async cut(): Promise<void> {
    if (this.used === 0) return;
    const chunk = Buffer.from(this.buf.subarray(0, this.used));
    this.used = 0;
    const p = this.store.write(chunk);
    this.refs.push(p);
    // Failures are reported by done(), which settles every write; here a write only frees its slot.
    const tracked: Promise<unknown> = p.then(() => undefined, () => undefined).finally(() => {
      this.inFlight = this.inFlight.filter((x) => x !== tracked);
    });
    this.inFlight.push(tracked);
    if (this.inFlight.length >= this.parallel) await Promise.race(this.inFlight);
  }

  async done(): Promise<ChunkRef[]> {
    await this.cut();
    const settled = await Promise.allSettled(this.refs);
    const ok = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed !== undefined) {
      this.store.unpin(ok);
      throw (failed as PromiseRejectedResult).reason;
    }
    return ok;
  }
}

/** Write a directory tree's files as chunks; resolves with its (uncommitted) entries and pinned chunks. */
export async function packTree(store: ChunkStore, dir: string): Promise<{ entries: TreeEntry[]; chunks: ChunkRef[]; size: number }> {
  const walked: Walked[] = [];
  const pace = new Pace();
  await walk(dir, '', walked, pace);
  const segments = new Map<string, Walked[]>();
  for (const w of walked) {
    if ((w.kind !== 'f' && w.kind !== 'x') || w.size === 0) continue;
    const seg = segmentOf(w.rel, w.size);
    let list = segments.get(seg);
    if (list === undefined) segments.set(seg, (list = []));
    list.push(w);
  }
  const offsets = new Map<string, number>();
  const writer = new ChunkWriter(store);
  const piece = Buffer.allocUnsafe(CHUNK_SIZE);
  try {
    for (const seg of [...segments.keys()].sort()) {
      for (const w of segments.get(seg) as Walked[]) {
        offsets.set(w.rel, writer.offset);
        const fd = openSync(join(dir, w.rel), 'r');
        try {
          let left = w.size;
          while (left > 0) {
            const n = readSync(fd, piece, 0, Math.min(piece.length, left), null);
            if (n === 0) throw new Error(`${w.rel} shrank while it was packed`);
            await writer.push(piece.subarray(0, n));
            left -= n;
          }
        } finally {
          closeSync(fd);
        }
        await pace.breathe();
      }
      await writer.cut();
    }
  } catch (e) {
    await writer.done().then((refs) => store.unpin(refs), () => undefined);
    throw e;
  }
  const chunks = await writer.done();
  const entries: TreeEntry[] = walked.map((w) => {
    if (w.kind === 'd') return { p: w.rel, t: 'd' };
    if (w.kind === 'l') return { p: w.rel, t: 'l', l: w.target ?? '' };
    return { p: w.rel, t: w.kind, o: offsets.get(w.rel) ?? 0, n: w.size };
  });
  return { entries, chunks, size: writer.offset };
}

/** Write a buffer as chunks; resolves with its pinned chunks and SHA-256. */
export async function packBuffer(store: ChunkStore, data: Buffer): Promise<{ chunks: ChunkRef[]; sha256: string }> {
  const writer = new ChunkWriter(store);
  await writer.push(data);
  const chunks = await writer.done();
  return { chunks, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * Recreate a tree from its chunks (consumed in stream order as they arrive): directories, files with their
 * modes, links. `next` yields the stream's chunks in order.
 */
export async function unpackTree(entries: readonly TreeEntry[], chunks: AsyncIterable<Buffer>, dest: string): Promise<void> {
  const pace = new Pace();
  mkdirSync(dest, { recursive: true, mode: 0o755 });
  for (const e of entries) {
    if (e.t === 'd') mkdirSync(join(dest, e.p), { recursive: true, mode: 0o755 });
    await pace.breathe();
  }
  const files = entries.filter((e) => (e.t === 'f' || e.t === 'x'));
  for (const f of files) {
    if ((f.n ?? 0) === 0) writeFileSync(join(dest, f.p), '', { mode: f.t === 'x' ? 0o755 : 0o644 });
    await pace.breathe();
  }
  const data = files.filter((f) => (f.n ?? 0) > 0).sort((a, b) => (a.o ?? 0) - (b.o ?? 0));
  let fi = 0;
  let pos = 0;
  let fd: number | undefined;
  try {
    for await (const chunk of chunks) {
      let at = 0;
      while (at < chunk.length) {
        const f = data[fi];
        if (f === undefined) throw new Error('chunk stream longer than the files it holds');
        const start = pos + at - (f.o ?? 0);
        const take = Math.min(chunk.length - at, (f.n ?? 0) - start);
        fd ??= openSync(join(dest, f.p), 'w', f.t === 'x' ? 0o755 : 0o644);
        writeSync(fd, chunk, at, take, start);
        at += take;
        if (start + take === f.n) {
          closeSync(fd);
          fd = undefined;
          fi++;
          await pace.breathe();
        }
      }
      pos += chunk.length;
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (fi !== data.length) throw new Error('chunk stream ended before the files it holds');
  // Modes explicitly, whatever the umask: environments run as an unprivileged user that must read the code.
  for (const e of entries) {
    if (e.t === 'l') symlinkSync(e.l ?? '', join(dest, e.p));
    else chmodSync(join(dest, e.p), e.t === 'f' ? 0o644 : 0o755);
    await pace.breathe();
  }
  chmodSync(dest, 0o755);
}
