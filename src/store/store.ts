import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { mkdirSync, openSync, closeSync, writeSync, fsyncSync } from 'node:fs';
import type { Db } from '../control/db.js';
import type { ChunkRef, ChunkStore, TierCounters } from './chunk-store.js';
import { StoreError } from './errors.js';
import { parseManifest, type BlobManifest, type Manifest, type TreeManifest } from './manifest.js';
import { packBuffer, packTree, unpackTree } from './pack.js';

/**
 * Most chunks one access trace holds (4 GiB of 512 KiB chunks: more than a version's code, layers, code cache
 * and snapshot together). A trace holds only hashes of chunks the server itself read from artifacts it stored,
 * in the order it read them; a function influences one only through the size of what it produced (its
 * snapshot, its code cache), so this bound keeps traces small whatever those were.
 */
export const MAX_TRACE_CHUNKS = 8192;
/** A chunk's plaintext SHA-256, as traces name chunks. */
export const TRACE_HASH = /^[0-9a-f]{64}$/;

export type ArtifactKind = 'code' | 'code-zip' | 'code-cache' | 'snapshot' | 'layer';

export interface ReadOptions {
  /** Reads kept in flight ahead of the consumer (1: each chunk fetched when it is needed). */
  readonly parallel?: number;
  /** Told each chunk's hash in the order the read needs them (access traces). */
  readonly onChunk?: (hash: string) => void;
}

export interface StoreStats {
  readonly artifacts: number;
  /** Sum of the artifacts' sizes, as if each were stored whole. */
  readonly logicalBytes: number;
  /** Distinct chunks referenced, and their plaintext bytes. */
  readonly uniqueChunks: number;
  readonly uniqueBytes: number;
  /** Bytes the origin holds (sealed chunks, referenced or not yet collected): compressed where that paid, encrypted. */
  readonly storedBytes: number;
  readonly storedChunks: number;
  /** Origin bytes of the referenced chunks alone: uniqueBytes after compression. */
  readonly referencedStoredBytes: number;
  /** logicalBytes / uniqueBytes: what dedup saves. */
  readonly dedupRatio: number;
  /** uniqueBytes / referencedStoredBytes: what compression saves (framing and tags included). */
  readonly compressionRatio: number;
  readonly tiers: readonly (TierCounters & { hitRate: number })[];
}

export interface CollectResult {
  readonly removed: number;
  readonly removedBytes: number;
  readonly kept: number;
}

/** Origin bytes of an artifact's distinct chunks (a chunk of unknown sealed size counts its plaintext and framing). */
function storedOf(chunks: readonly ChunkRef[]): number {
  const seen = new Map<string, number>();
  for (const c of chunks) seen.set(c.h, c.s ?? c.n + SEAL_OVERHEAD);
  let total = 0;
  for (const n of seen.values()) total += n;
  return total;
}

/** Format byte and GCM tag. */
const SEAL_OVERHEAD = 17;

/**
 * Artifacts (code packages, code caches, snapshots, layers) as manifests of chunks. Putting one writes and
 * syncs its chunks to the origin first and commits the manifest (a row in SQLite) last; garbage collection
 * removes only chunks no committed manifest names and no put in progress holds, and only once they are older
 * than a grace period (a put in another process is not visible here until it commits).
 */
export class Store {
  constructor(readonly chunks: ChunkStore, private readonly db: Db) {}

  // ---- writing ----

  async putBlob(name: string, kind: ArtifactKind, data: Buffer, meta?: Record<string, unknown>): Promise<BlobManifest> {
    const { chunks, sha256 } = await packBuffer(this.chunks, data);
    const m: BlobManifest = { format: 1, type: 'blob', size: data.length, stored: storedOf(chunks), sha256, chunks, ...(meta === undefined ? {} : { meta }) };
    this.commit(name, kind, m, chunks);
    return m;
  }

  async putTree(name: string, kind: ArtifactKind, dir: string, meta?: Record<string, unknown>): Promise<TreeManifest> {
    const { entries, chunks, size } = await packTree(this.chunks, dir);
    const m: TreeManifest = { format: 1, type: 'tree', size, stored: storedOf(chunks), chunks, entries, ...(meta === undefined ? {} : { meta }) };
    this.commit(name, kind, m, chunks);
    return m;
  }

  /** The commit point: after every chunk is durable in the origin. */
  private commit(name: string, kind: ArtifactKind, m: Manifest, pinned: readonly ChunkRef[]): void {
    try {
      const now = Date.now();
      this.db.prepare(`INSERT INTO store_artifacts (name, kind, manifest, logical_bytes, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, manifest = excluded.manifest, logical_bytes = excluded.logical_bytes, last_used_at = excluded.last_used_at`)
        .run(name, kind, JSON.stringify(m), m.size, now, now);
    } finally {
      this.chunks.unpin(pinned);
    }
  }

  // ---- reading ----

  manifest(name: string): Manifest | undefined {
    const row = this.db.prepare('SELECT manifest FROM store_artifacts WHERE name = ?').get(name) as { manifest: string } | undefined;
    return row === undefined ? undefined : parseManifest(name, row.manifest);
  }

  has(name: string): boolean {
    return this.db.prepare('SELECT 1 FROM store_artifacts WHERE name = ?').get(name) !== undefined;
  }

  names(kind: ArtifactKind): string[] {
    return this.db.prepare('SELECT name FROM store_artifacts WHERE kind = ? ORDER BY name').pluck().all(kind) as string[];
  }

  private must(name: string): Manifest {
    const m = this.manifest(name);
    if (m === undefined) throw new StoreError('ArtifactMissing', `no artifact ${name} in the store`, { name });
    return m;
  }

  async readBlob(name: string, o: ReadOptions = {}): Promise<Buffer> {
    const m = this.must(name);
    if (m.type !== 'blob') throw new StoreError('ManifestInvalid', `${name} is a ${m.type}, not a blob`, { name });
    const parts: Buffer[] = [];
    for await (const c of this.chunks.stream(m.chunks, o.parallel ?? 1, o.onChunk)) parts.push(c);
    return Buffer.concat(parts);
  }

  /** Write a blob to a file (temporary name, renamed when complete and verified). */
  async materialiseBlob(name: string, file: string, o: ReadOptions = {}): Promise<BlobManifest> {
    const m = this.must(name);
    if (m.type !== 'blob') throw new StoreError('ManifestInvalid', `${name} is a ${m.type}, not a blob`, { name });
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      for await (const c of this.chunks.stream(m.chunks, o.parallel ?? 1, o.onChunk)) writeSync(fd, c);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      await rm(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    await rename(tmp, file);
    return m;
  }

  /** Recreate a tree under dest (built beside it and renamed into place, so dest is complete or absent). */
  async materialiseTree(name: string, dest: string, o: ReadOptions = {}): Promise<TreeManifest> {
    const m = this.must(name);
    if (m.type !== 'tree') throw new StoreError('ManifestInvalid', `${name} is a ${m.type}, not a tree`, { name });
    const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await unpackTree(m.entries, this.chunks.stream(m.chunks, o.parallel ?? 1, o.onChunk), tmp);
      await rm(dest, { recursive: true, force: true });
      await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return m;
  }

  // ---- lifetime ----

  /** Note a use (expiry counts from the last one). */
  touch(name: string, now = Date.now()): void {
    this.db.prepare('UPDATE store_artifacts SET last_used_at = ? WHERE name = ?').run(now, name);
  }

  lastUsed(name: string): number | undefined {
    return (this.db.prepare('SELECT last_used_at FROM store_artifacts WHERE name = ?').pluck().get(name) as number | undefined);
  }

  remove(name: string): boolean {
    this.db.prepare('DELETE FROM store_traces WHERE name = ?').run(name);
    return this.db.prepare('DELETE FROM store_artifacts WHERE name = ?').run(name).changes > 0;
  }

  /** Remove artifacts of a kind unused for maxIdleMs; returns their names. Their chunks go at the next collect. */
  expire(kind: ArtifactKind, maxIdleMs: number, now = Date.now()): string[] {
    const names = this.db.prepare('SELECT name FROM store_artifacts WHERE kind = ? AND last_used_at < ?').pluck().all(kind, now - maxIdleMs) as string[];
    for (const n of names) this.remove(n);
    return names;
  }

  /** Locators of every chunk a committed manifest names. */
  referenced(): Set<string> {
    const out = new Set<string>();
    const rows = this.db.prepare('SELECT name, manifest FROM store_artifacts').all() as { name: string; manifest: string }[];
    for (const r of rows) for (const c of parseManifest(r.name, r.manifest).chunks) out.add(this.chunks.locator(c.h));
    return out;
  }

  /**
   * Remove chunks that no committed manifest names, from every tier. A chunk younger than graceMs is kept:
   * another process may have written it for a manifest it has not committed yet.
   */
  async collect(o: { graceMs?: number; now?: number } = {}): Promise<CollectResult> {
    const grace = o.graceMs ?? 60 * 60 * 1000;
    const now = o.now ?? Date.now();
    const referenced = this.referenced();
    let removed = 0;
    let removedBytes = 0;
    let kept = 0;
    for (const tier of this.chunks.tiers) {
      const origin = tier === this.chunks.origin;
      const victims: { id: string; size: number }[] = [];
      for await (const c of tier.list()) {
        if (referenced.has(c.id) || this.chunks.pinned(c.id) || now - c.mtimeMs < grace) {
          if (origin) kept++;
          continue;
        }
        victims.push(c);
      }
      for (const v of victims) {
        // Checked again just before removal: a put may have pinned it since the listing.
        if (this.chunks.pinned(v.id)) continue;
        await tier.delete(v.id);
        if (origin) {
          removed++;
          removedBytes += v.size;
        }
      }
    }
    return { removed, removedBytes, kept };
  }

  // ---- access traces ----

  /** A stored trace: chunk hashes only, at most MAX_TRACE_CHUNKS; a row of any other shape reads as none. */
  trace(key: string): string[] | undefined {
    const t = this.db.prepare('SELECT chunks FROM store_traces WHERE name = ?').pluck().get(key) as string | undefined;
    if (t === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(t);
    } catch {
      return undefined;
    }
    if (!Array.isArray(parsed)) return undefined;
    const hashes = parsed.slice(0, MAX_TRACE_CHUNKS);
    return hashes.every((h): h is string => typeof h === 'string' && TRACE_HASH.test(h)) ? hashes : undefined;
  }

  saveTrace(key: string, hashes: readonly string[]): void {
    this.db.prepare('INSERT OR REPLACE INTO store_traces (name, chunks, created_at) VALUES (?, ?, ?)').run(key, JSON.stringify(hashes), Date.now());
  }

  // ---- numbers ----

  /** Origin bytes of every artifact of these kinds, each counted whole (what an account's code storage is). */
  storedBytesOf(kinds: readonly ArtifactKind[]): number {
    const marks = kinds.map(() => '?').join(', ');
    return this.db.prepare(`SELECT COALESCE(SUM(COALESCE(json_extract(manifest, '$.stored'), logical_bytes)), 0) FROM store_artifacts WHERE kind IN (${marks})`)
      .pluck().get(...kinds) as number;
  }

  /** Origin bytes of one artifact (its plaintext size for one written before this was recorded). */
  storedBytesOfArtifact(name: string): number | undefined {
    return this.db.prepare(`SELECT COALESCE(json_extract(manifest, '$.stored'), logical_bytes) FROM store_artifacts WHERE name = ?`).pluck().get(name) as number | undefined;
  }

  async stats(): Promise<StoreStats> {
    const rows = this.db.prepare('SELECT name, manifest, logical_bytes FROM store_artifacts').all() as { name: string; manifest: string; logical_bytes: number }[];
    let logicalBytes = 0;
    const unique = new Map<string, number>();
    for (const r of rows) {
      logicalBytes += r.logical_bytes;
      for (const c of parseManifest(r.name, r.manifest).chunks) unique.set(c.h, c.n);
    }
    const referenced = new Set([...unique.keys()].map((h) => this.chunks.locator(h)));
    let storedBytes = 0;
    let storedChunks = 0;
    let referencedStoredBytes = 0;
    for await (const c of this.chunks.origin.list()) {
      storedBytes += c.size;
      storedChunks++;
      if (referenced.has(c.id)) referencedStoredBytes += c.size;
    }
    const uniqueBytes = [...unique.values()].reduce((s, n) => s + n, 0);
    return {
      artifacts: rows.length,
      logicalBytes,
      uniqueChunks: unique.size,
      uniqueBytes,
      storedBytes,
      storedChunks,
      referencedStoredBytes,
      dedupRatio: uniqueBytes === 0 ? 1 : logicalBytes / uniqueBytes,
      compressionRatio: referencedStoredBytes === 0 ? 1 : uniqueBytes / referencedStoredBytes,
      tiers: this.chunks.stats().map((t) => ({ ...t, hitRate: t.hits + t.misses === 0 ? 0 : t.hits / (t.hits + t.misses) })),
    };
  }
}
