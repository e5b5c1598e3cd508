import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkId, validId, type ChunkInfo, type ChunkTier } from './tier.js';

export interface DirTierOptions {
  readonly name?: string;
  /** Evict least recently used chunks beyond this many bytes (a cache); unbounded when absent (an origin). */
  readonly maxBytes?: number;
  /** fsync each chunk and its directory before put resolves (an origin: chunks before the manifest). */
  readonly durable?: boolean;
}

/**
 * Chunks as files in a directory (`ab/abcdef…`), written to a temporary name and renamed into place, so a
 * reader never sees half a chunk. With maxBytes it is a size-capped LRU cache; with durable it is an origin.
 */
export class DirTier implements ChunkTier {
  readonly name: string;
  private readonly maxBytes: number;
  private readonly durable: boolean;
  /** Size of each chunk held, in least-recently-used order (only tracked for a capped tier). */
  private lru: Map<string, number> | undefined;
  private loading: Promise<Map<string, number>> | undefined;
  private bytes = 0;

  constructor(readonly root: string, o: DirTierOptions = {}) {
    this.name = o.name ?? 'disk';
    this.maxBytes = o.maxBytes ?? Number.POSITIVE_INFINITY;
    this.durable = o.durable ?? false;
    mkdirSync(root, { recursive: true, mode: 0o700 });
  }

  private path(id: string): string {
    return join(this.root, id.slice(0, 2), id);
  }

  private get capped(): boolean {
    return Number.isFinite(this.maxBytes);
  }

  /** The capped tier's index, built once from what is on disk (oldest first). */
  private index(): Promise<Map<string, number>> {
    if (this.lru !== undefined) return Promise.resolve(this.lru);
    this.loading ??= (async () => {
      const all: ChunkInfo[] = [];
      for await (const c of this.scan()) all.push(c);
      all.sort((a, b) => a.mtimeMs - b.mtimeMs);
      const m = new Map<string, number>();
      for (const c of all) m.set(c.id, c.size);
      this.bytes = all.reduce((s, c) => s + c.size, 0);
      this.lru = m;
      return m;
    })();
    return this.loading;
  }

  async get(id: string): Promise<Buffer | undefined> {
    if (!validId(id)) return undefined;
    let data: Buffer;
    try {
      data = await readFile(this.path(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    if (this.capped) {
      const lru = await this.index();
      lru.delete(id);
      lru.set(id, data.length);
    }
    return data;
  }

  async put(id: string, data: Buffer): Promise<void> {
    checkId(id);
    if (data.length > this.maxBytes) return;
    const file = this.path(id);
    const dir = join(this.root, id.slice(0, 2));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(data);
      if (this.durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    if (this.durable) await syncDir(dir);
    if (this.capped) {
      const lru = await this.index();
      const old = lru.get(id);
      if (old !== undefined) this.bytes -= old;
      lru.delete(id);
      lru.set(id, data.length);
      this.bytes += data.length;
      await this.evict(lru);
    }
  }

  private async evict(lru: Map<string, number>): Promise<void> {
    for (const [k, size] of lru) {
      if (this.bytes <= this.maxBytes) return;
      lru.delete(k);
      this.bytes -= size;
      await rm(this.path(k), { force: true });
    }
  }

  async has(id: string): Promise<boolean> {
    if (!validId(id)) return false;
    try {
      await stat(this.path(id));
      return true;
    } catch {
      return false;
    }
  }

  async storedSize(id: string): Promise<number | undefined> {
    if (!validId(id)) return undefined;
    try {
      return (await stat(this.path(id))).size;
    } catch {
      return undefined;
    }
  }

  async delete(id: string): Promise<void> {
    if (!validId(id)) return;
    await rm(this.path(id), { force: true });
    if (this.capped) {
      const lru = await this.index();
      const size = lru.get(id);
      if (size !== undefined) {
        lru.delete(id);
        this.bytes -= size;
      }
    }
  }

  list(): AsyncIterable<ChunkInfo> {
    return this.scan();
  }

  private async *scan(): AsyncIterable<ChunkInfo> {
    for (const d of await readdir(this.root).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{2}$/.test(d)) continue;
      for (const f of await readdir(join(this.root, d)).catch(() => [] as string[])) {
        const p = join(this.root, d, f);
        if (!validId(f)) {
          // A temporary file left by a crash mid-write: never renamed, so nothing refers to it.
          if (f.endsWith('.tmp')) {
            const st = await stat(p).catch(() => undefined);
            if (st !== undefined && Date.now() - st.mtimeMs > 60_000) await rm(p, { force: true });
          }
          continue;
        }
        const st = await stat(p).catch(() => undefined);
        if (st !== undefined) yield { id: f, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
