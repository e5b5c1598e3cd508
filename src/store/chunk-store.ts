import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { StoreError, isStoreError } from './errors.js';
import { sha256Hex, type Sealer } from './seal.js';
import type { ChunkTier } from './tier.js';

/** A chunk as a manifest names it: SHA-256 of its plaintext and its length. */
export interface ChunkRef {
  readonly h: string;
  readonly n: number;
  /** Sealed bytes in the origin (compressed and encrypted), when known. */
  readonly s?: number;
}

export interface TierCounters {
  readonly tier: string;
  hits: number;
  misses: number;
  /** Sealed bytes read from this tier. */
  bytes: number;
  /** Chunks this tier returned that failed verification. */
  corrupt: number;
}

/**
 * Chunks through tiers, fastest first and the origin last. A read asks each tier in turn, verifies what it
 * gets (GCM tag and plaintext SHA-256), drops a bad copy and asks the next tier; a good copy is filled into the
 * tiers above. Concurrent reads of one chunk share one fetch. A write goes to the origin, durably, once per
 * distinct plaintext; its chunks stay pinned (safe from garbage collection) until the caller releases them
 * after committing the manifest that names them.
 */
export class ChunkStore {
  private readonly reading = new Map<string, Promise<Buffer>>();
  private readonly pins = new Map<string, number>();
  private readonly counters: TierCounters[];
  readonly logger: Logger;

  constructor(readonly sealer: Sealer, readonly tiers: readonly ChunkTier[], logger: Logger = silentLogger) {
    if (tiers.length === 0) throw new Error('a chunk store needs at least an origin tier');
    this.counters = tiers.map((t) => ({ tier: t.name, hits: 0, misses: 0, bytes: 0, corrupt: 0 }));
    this.logger = logger;
  }

  get origin(): ChunkTier {
    return this.tiers[this.tiers.length - 1] as ChunkTier;
  }

  locator(hash: string): string {
    return this.sealer.locator(hash);
  }

  stats(): TierCounters[] {
    return this.counters.map((c) => ({ ...c }));
  }

  /** The verified plaintext of a chunk. Throws StoreError ChunkMissing or ChunkCorrupt. */
  read(hash: string): Promise<Buffer> {
    let p = this.reading.get(hash);
    if (p === undefined) {
      p = this.fetch(hash).finally(() => this.reading.delete(hash));
      this.reading.set(hash, p);
    }
    return p;
  }

  private async fetch(hash: string): Promise<Buffer> {
    const id = this.sealer.locator(hash);
    let lastCorrupt: StoreError | undefined;
    for (let i = 0; i < this.tiers.length; i++) {
      const tier = this.tiers[i] as ChunkTier;
      const c = this.counters[i] as TierCounters;
      const sealed = await tier.get(id);
      if (sealed === undefined) {
        c.misses++;
        continue;
      }
      c.bytes += sealed.length;
      let plain: Buffer;
      try {
        plain = this.sealer.open(hash, sealed);
      } catch (e) {
        if (!isStoreError(e, 'ChunkCorrupt')) throw e;
        c.corrupt++;
        c.misses++;
        lastCorrupt = e;
        this.logger.warn({ tier: tier.name, chunk: hash.slice(0, 16), why: e.fields.why }, 'corrupt chunk; trying the next tier');
        // A cache's bad copy is dropped; the origin's is kept for an operator to look at (it has no better one).
        if (i < this.tiers.length - 1) await tier.delete(id).catch(() => undefined);
        continue;
      }
      c.hits++;
      for (let j = 0; j < i; j++) {
        await (this.tiers[j] as ChunkTier).put(id, sealed).catch((err: unknown) => this.logger.warn({ err, tier: this.tiers[j]?.name }, 'cannot fill cache tier'));
      }
      return plain;
    }
    if (lastCorrupt !== undefined) {
      throw new StoreError('ChunkCorrupt', `chunk ${hash.slice(0, 16)} is corrupt in every tier that holds it (${String(lastCorrupt.fields.why)})`, { hash });
    }
    throw new StoreError('ChunkMissing', `chunk ${hash.slice(0, 16)} is in no tier (origin ${this.origin.name})`, { hash });
  }

  /**
   * Store one chunk durably in the origin (unless it is already there) and pin it. Resolves with its ref;
   * call unpin() with the refs once the manifest naming them is committed (or abandoned).
   */
  async write(plain: Buffer): Promise<ChunkRef> {
    const hash = sha256Hex(plain);
    const id = this.sealer.locator(hash);
    this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
    let s: number | undefined;
    try {
      s = await this.storedSize(id);
      if (s === undefined) {
        const { sealed } = this.sealer.seal(plain, hash);
        if (!(await this.origin.has(id))) await this.origin.put(id, sealed);
        s = sealed.length;
      }
    } catch (e) {
      this.unpin([{ h: hash, n: plain.length }]);
      throw e;
    }
    return { h: hash, n: plain.length, s };
  }

  /** The size of a chunk the origin already holds (undefined when it holds none, or cannot tell). */
  private async storedSize(id: string): Promise<number | undefined> {
    if (this.origin.storedSize !== undefined) return this.origin.storedSize(id);
    return undefined;
  }

  unpin(refs: readonly ChunkRef[]): void {
    for (const r of refs) {
      const id = this.sealer.locator(r.h);
      const n = (this.pins.get(id) ?? 0) - 1;
      if (n <= 0) this.pins.delete(id);
      else this.pins.set(id, n);
    }
  }

  pinned(id: string): boolean {
    return this.pins.has(id);
  }

  /**
   * Read chunks in order, keeping up to `parallel` reads in flight ahead of the consumer. Yields plaintext
   * in the order given.
   */
  async *stream(refs: readonly ChunkRef[], parallel = 1, onChunk?: (hash: string) => void): AsyncIterable<Buffer> {
    const inFlight: Promise<Buffer>[] = [];
    let next = 0;
    const fill = (): void => {
      while (inFlight.length < Math.max(1, parallel) && next < refs.length) {
        const r = refs[next++] as ChunkRef;
        onChunk?.(r.h);
        const p = this.read(r.h);
        p.catch(() => undefined);
        inFlight.push(p);
      }
    };
    fill();
    while (inFlight.length > 0) {
      const data = await (inFlight.shift() as Promise<Buffer>);
      fill();
      yield data;
    }
  }

  /** Warm the tiers above the origin with these chunks, in order, `parallel` at a time. */
  async prefetch(hashes: readonly string[], parallel: number): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < hashes.length) {
        const h = hashes[next++] as string;
        await this.read(h).catch((err: unknown) => this.logger.debug({ err, chunk: h.slice(0, 16) }, 'prefetch failed'));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, parallel) }, () => worker()));
  }
}
