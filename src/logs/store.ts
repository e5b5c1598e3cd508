import type { Db } from '../control/db.js';

export interface LogLine {
  readonly seq: number;
  readonly functionName: string;
  readonly version: string;
  readonly requestId: string | null;
  readonly timestamp: number;
  readonly message: string;
  /** Attempt number of an asynchronous invocation (1 for the first); absent for other lines. */
  readonly attempt?: number;
}

interface Row { seq: number; function_name: string; version: string; request_id: string | null; ts: number; message: string; attempt: number | null }

/**
 * Function logs in SQLite, appended one invocation at a time (one transaction per batch) and trimmed to a
 * size cap, oldest first.
 */
export class LogStore {
  private readonly insert;
  private bytesSinceTrim = 0;
  private readonly trimEvery: number;
  /** Request ids of asynchronous invocations in progress → their attempt number, stamped on their lines. */
  private readonly attempts = new Map<string, number>();

  constructor(private readonly db: Db, private readonly capBytes = 64 * 1024 * 1024) {
    this.insert = db.prepare('INSERT INTO logs (function_name, version, request_id, ts, message, attempt) VALUES (?, ?, ?, ?, ?, ?)');
    this.trimEvery = Math.max(64 * 1024, Math.floor(capBytes / 16));
  }

  append(functionName: string, version: string, lines: readonly { requestId: string | null; timestamp: number; message: string }[]): void {
    if (lines.length === 0) return;
    let bytes = 0;
    this.db.transaction(() => {
      for (const l of lines) {
        this.insert.run(functionName, version, l.requestId, l.timestamp, l.message, l.requestId === null ? null : (this.attempts.get(l.requestId) ?? null));
        bytes += l.message.length + 64;
      }
    })();
    this.bytesSinceTrim += bytes;
    if (this.bytesSinceTrim >= this.trimEvery) this.trim();
  }

  /**
   * Lines of `requestId` stored from now until attemptEnded are stamped with `attempt`: the attempts of an
   * asynchronous invocation share its request id, as Lambda's do.
   */
  attemptStarted(requestId: string, attempt: number): void {
    this.attempts.set(requestId, attempt);
  }

  attemptEnded(requestId: string): void {
    this.attempts.delete(requestId);
  }

  /** Drop the oldest lines until the stored messages fit the cap. */
  trim(): void {
    this.bytesSinceTrim = 0;
    const total = (this.db.prepare('SELECT COALESCE(SUM(LENGTH(message) + 64), 0) AS b FROM logs').get() as { b: number }).b;
    if (total <= this.capBytes) return;
    let excess = total - Math.floor(this.capBytes * 0.9);
    const rows = this.db.prepare('SELECT seq, LENGTH(message) + 64 AS b FROM logs ORDER BY seq').iterate() as IterableIterator<{ seq: number; b: number }>;
    let cut = 0;
    for (const r of rows) {
      excess -= r.b;
      cut = r.seq;
      if (excess <= 0) break;
    }
    this.db.prepare('DELETE FROM logs WHERE seq <= ?').run(cut);
  }

  query(functionName: string, opts: { afterSeq?: number; since?: number; limit?: number; requestId?: string }): LogLine[] {
    const limit = Math.min(Math.max(opts.limit ?? 1000, 1), 10000);
    const rows = this.db.prepare(`SELECT * FROM logs WHERE function_name = ? AND seq > ? AND ts >= ? AND (? IS NULL OR request_id = ?)
      ORDER BY seq ${opts.afterSeq === undefined && opts.since === undefined ? 'DESC' : 'ASC'} LIMIT ?`)
      .all(functionName, opts.afterSeq ?? 0, opts.since ?? 0, opts.requestId ?? null, opts.requestId ?? null, limit) as Row[];
    if (opts.afterSeq === undefined && opts.since === undefined) rows.reverse();
    return rows.map((r) => ({
      seq: r.seq, functionName: r.function_name, version: r.version, requestId: r.request_id, timestamp: r.ts, message: r.message,
      ...(r.attempt === null ? {} : { attempt: r.attempt }),
    }));
  }

  deleteFunction(functionName: string): void {
    this.db.prepare('DELETE FROM logs WHERE function_name = ?').run(functionName);
  }
}
