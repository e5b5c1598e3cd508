import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import Module from 'node:module';
import { join, sep } from 'node:path';

/** Most entries (compiled files) one cache may hold. */
const MAX_ENTRIES = 20_000;
/** Largest source file an entry is checked against. */
const MAX_SOURCE_BYTES = 64 * 1024 * 1024;
/** V8's SerializedCodeData header: magic number (0xC0DE....) at 0, source hash at 8 (the source's length). */
const V8_HEADER_BYTES = 16;
const WRAPPER = Module.wrap('');

export interface VerifiedCodeCache {
  /** The cache with only the entries that passed, in the runtime's wire format. */
  readonly data: Buffer;
  readonly kept: number;
  readonly dropped: number;
}

/**
 * Check a code cache the producer uploaded against the sources it claims to belong to, before it is kept.
 * Wire format (src/runtimes/node/code-cache.cjs): repeated [u32 name length][name][u32 data length][data].
 * Throws on a malformed cache. An entry is kept only when its name is a path under one of `roots` (sandbox
 * prefix → host directory the server materialised), which resolves, without leaving that directory, to a
 * regular file, and when its V8 header says it was compiled from a source of exactly that file's length once
 * wrapped as CommonJS (V8 itself checks no more than that length, plus its version and flags).
 */
export async function verifyCodeCache(buf: Buffer, roots: ReadonlyMap<string, string>): Promise<VerifiedCodeCache> {
  const entries: { name: string; data: Buffer }[] = [];
  const names = new Set<string>();
  let o = 0;
  while (o < buf.length) {
    if (entries.length >= MAX_ENTRIES) throw new Error(`more than ${MAX_ENTRIES} entries`);
    if (o + 4 > buf.length) throw new Error('truncated entry');
    const n = buf.readUInt32LE(o);
    if (n === 0 || n > 4096 || o + 4 + n + 4 > buf.length) throw new Error('bad entry name length');
    const name = buf.toString('utf8', o + 4, o + 4 + n);
    o += 4 + n;
    const d = buf.readUInt32LE(o);
    if (d < V8_HEADER_BYTES || o + 4 + d > buf.length) throw new Error('bad entry data length');
    const data = buf.subarray(o + 4, o + 4 + d);
    o += 4 + d;
    if (names.has(name)) throw new Error('duplicate entry');
    names.add(name);
    entries.push({ name, data });
  }
  const kept: { name: string; data: Buffer }[] = [];
  for (const e of entries) {
    if ((e.data.readUInt32LE(0) >>> 16) !== 0xc0de) continue;
    const length = await wrappedSourceLength(e.name, roots);
    if (length !== undefined && e.data.readUInt32LE(8) === length) kept.push(e);
  }
  const parts: Buffer[] = [];
  for (const e of kept) {
    const name = Buffer.from(e.name);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(name.length);
    const dl = Buffer.alloc(4);
    dl.writeUInt32LE(e.data.length);
    parts.push(head, name, dl, e.data);
  }
  return { data: Buffer.concat(parts), kept: kept.length, dropped: entries.length - kept.length };
}

/** The UTF-16 length of the file behind a sandbox path, wrapped as the runtime compiles it; undefined if unusable. */
async function wrappedSourceLength(name: string, roots: ReadonlyMap<string, string>): Promise<number | undefined> {
  if (name.includes('\0') || name.includes('\\')) return undefined;
  for (const [prefix, hostDir] of roots) {
    if (!name.startsWith(prefix)) continue;
    const rel = name.slice(prefix.length);
    const parts = rel.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..')) return undefined;
    try {
      const root = await realpath(hostDir);
      const file = await realpath(join(root, ...parts));
      if (!file.startsWith(root + sep)) return undefined;
      const h = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        const st = await h.stat();
        if (!st.isFile() || st.size > MAX_SOURCE_BYTES) return undefined;
        const text = (await h.readFile()).toString('utf8');
        return WRAPPER.length + text.length;
      } finally {
        await h.close();
      }
    } catch {
      return undefined;
    }
  }
  return undefined;
}
