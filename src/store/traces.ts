import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { MAX_TRACE_CHUNKS, TRACE_HASH, type ReadOptions, type Store } from './store.js';

/** What a cold start of a version reads: its code package, the code caches of it, its snapshot. */
export interface StartSubject {
  readonly key: string;
  readonly functionName: string;
  readonly version: string;
  readonly codeSha256: string;
}

interface Recording {
  readonly subject: StartSubject;
  readonly hashes: string[];
  readonly seen: Set<string>;
  readonly until: number;
}

/**
 * Access traces. The first cold start of a version (with no trace yet) records the order in which its
 * chunks were first needed, across its artifacts; a later cold start on a worker that has not read that
 * version since it started prefetches the trace in that order, `parallel` chunks at a time, while the reads
 * that need the chunks proceed, each taking its chunk as soon as it has arrived (a read of a chunk in flight
 * joins that fetch).
 */
export class AccessTraces {
  private readonly recording = new Map<string, Recording>();
  private readonly prefetched = new Set<string>();
  private readonly dirty = new Set<Recording>();

  constructor(
    private readonly store: Store,
    private readonly o: { parallel?: number; recordMs?: number; logger?: Logger } = {},
  ) {}

  /** A cold start of this subject begins. */
  begin(s: StartSubject): void {
    if (this.recording.has(s.key) || this.prefetched.has(s.key)) return;
    const trace = this.store.trace(s.key);
    if (trace === undefined) {
      this.recording.set(s.key, { subject: s, hashes: [], seen: new Set(), until: Date.now() + (this.o.recordMs ?? 60_000) });
      return;
    }
    this.prefetched.add(s.key);
    const started = performance.now();
    void this.store.chunks.prefetch(trace, this.o.parallel ?? 8).then(() =>
      (this.o.logger ?? silentLogger).debug({ key: s.key, chunks: trace.length, ms: Math.round(performance.now() - started) }, 'trace prefetched'));
  }

  /** Read options for an artifact: notes its chunks into the recordings it belongs to. */
  readOptions(belongs: (s: StartSubject) => boolean): ReadOptions {
    const now = Date.now();
    const recs = [...this.recording.values()].filter((r) => {
      if (r.until < now) {
        this.recording.delete(r.subject.key);
        return false;
      }
      return belongs(r.subject);
    });
    if (recs.length === 0) return {};
    return {
      onChunk: (h) => {
        for (const r of recs) {
          if (r.seen.has(h) || r.hashes.length >= MAX_TRACE_CHUNKS || !TRACE_HASH.test(h)) continue;
          r.seen.add(h);
          r.hashes.push(h);
          this.save(r);
        }
      },
    };
  }

  /** Saved as it grows (batched): a cold start has no single end that every path passes through. */
  private save(r: Recording): void {
    if (this.dirty.size === 0) {
      setImmediate(() => {
        for (const d of this.dirty) this.store.saveTrace(d.subject.key, d.hashes);
        this.dirty.clear();
      });
    }
    this.dirty.add(r);
  }

  forCode(sha256: string): ReadOptions {
    return this.readOptions((s) => s.codeSha256 === sha256);
  }

  forCodeCache(key: string): ReadOptions {
    return this.readOptions((s) => key.startsWith(s.codeSha256));
  }

  forSnapshot(functionName: string, version: string): ReadOptions {
    return this.readOptions((s) => s.functionName === functionName && s.version === version);
  }
}
