import type { ChunkInfo, ChunkTier } from './tier.js';

export interface LinkModel {
  /** Round-trip cost of every request. */
  readonly latencyMs: number;
  /** Throughput of the link (shared by concurrent requests). */
  readonly bytesPerSecond: number;
}

/**
 * A tier behind a modelled network link: every request waits latencyMs, and transfers queue on one link of
 * bytesPerSecond. Used to measure the store against a remote origin on one machine.
 */
export class LinkTier implements ChunkTier {
  readonly name: string;
  /** When the link is next free to carry bytes. */
  private busyUntil = 0;

  constructor(private readonly inner: ChunkTier, private readonly model: LinkModel) {
    this.name = `${inner.name}+link`;
  }

  private async transfer(bytes: number): Promise<void> {
    const start = Math.max(performance.now(), this.busyUntil);
    this.busyUntil = start + (bytes / this.model.bytesPerSecond) * 1000;
    const wait = this.busyUntil - performance.now() + this.model.latencyMs;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  async get(id: string): Promise<Buffer | undefined> {
    const data = await this.inner.get(id);
    await this.transfer(data?.length ?? 0);
    return data;
  }

  async put(id: string, data: Buffer): Promise<void> {
    await this.transfer(data.length);
    await this.inner.put(id, data);
  }

  async has(id: string): Promise<boolean> {
    await this.transfer(0);
    return this.inner.has(id);
  }

  async delete(id: string): Promise<void> {
    await this.transfer(0);
    await this.inner.delete(id);
  }

  list(): AsyncIterable<ChunkInfo> {
    return this.inner.list();
  }
}
