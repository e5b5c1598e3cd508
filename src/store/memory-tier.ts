import { checkId, type ChunkInfo, type ChunkTier } from './tier.js';

/** Chunks in memory, least recently used evicted first once more than maxBytes are held. */
export class MemoryTier implements ChunkTier {
  readonly name: string;
  private readonly map = new Map<string, { data: Buffer; at: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes: number, name = 'memory') {
    this.name = name;
  }

  get size(): number {
    return this.bytes;
  }

  get(id: string): Promise<Buffer | undefined> {
    const e = this.map.get(id);
    if (e === undefined) return Promise.resolve(undefined);
    this.map.delete(id);
    this.map.set(id, e);
    return Promise.resolve(e.data);
  }

  async put(id: string, data: Buffer): Promise<void> {
    checkId(id);
    if (data.length > this.maxBytes) return;
    const old = this.map.get(id);
    if (old !== undefined) this.bytes -= old.data.length;
    this.map.delete(id);
    this.map.set(id, { data: Buffer.from(data), at: Date.now() });
    this.bytes += data.length;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= v.data.length;
    }
  }

  has(id: string): Promise<boolean> {
    return Promise.resolve(this.map.has(id));
  }

  delete(id: string): Promise<void> {
    const e = this.map.get(id);
    if (e !== undefined) {
      this.map.delete(id);
      this.bytes -= e.data.length;
    }
    return Promise.resolve();
  }

  async *list(): AsyncIterable<ChunkInfo> {
    for (const [id, e] of [...this.map]) yield { id, size: e.data.length, mtimeMs: e.at };
  }
}
