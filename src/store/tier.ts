/**
 * One level of the chunk store: memory, local disk, origin (a directory or an S3 bucket), or a wrapper such as
 * a modelled remote link. A tier stores opaque sealed chunks by locator and never interprets them; the store
 * above verifies every read. Every implementation passes test/store/tier-conformance.ts.
 */
export interface ChunkTier {
  readonly name: string;
  /** The sealed bytes, or undefined when this tier does not hold the chunk. */
  get(id: string): Promise<Buffer | undefined>;
  /** Store a chunk. A durable tier has it on stable storage when this resolves. */
  put(id: string, data: Buffer): Promise<void>;
  has(id: string): Promise<boolean>;
  /** The stored size of a chunk, undefined when absent (optional: without it a writer seals to learn the size). */
  storedSize?(id: string): Promise<number | undefined>;
  /** Remove a chunk; removing one that is absent is not an error. */
  delete(id: string): Promise<void>;
  /** Every chunk held, with its size and when it was written (for garbage collection's grace period). */
  list(): AsyncIterable<ChunkInfo>;
  close?(): Promise<void>;
}

export interface ChunkInfo {
  readonly id: string;
  readonly size: number;
  readonly mtimeMs: number;
}

export const validId = (id: string): boolean => /^[0-9a-f]{64}$/.test(id);

export function checkId(id: string): void {
  if (!validId(id)) throw new Error(`invalid chunk id ${JSON.stringify(id)}`);
}
