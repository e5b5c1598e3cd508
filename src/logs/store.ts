import Database from 'better-sqlite3';

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

/** A line to store. */
export interface LogRow {
  readonly functionName: string;
  readonly version: string;
  readonly requestId: string | null;
  readonly timestamp: number;
  readonly message: string;
  readonly attempt: number | null;
}

export interface LogQuery { readonly afterSeq?: number; readonly since?: number; readonly limit?: number; readonly requestId?: string }

export interface LogRetention {
  /** All functions' lines together (default 128 MiB); over it, the functions storing the most lose their oldest. */
  readonly capBytes?: number;
  /** One function's lines (default 16 MiB); over it, its oldest lines go. */
  readonly functionCapBytes?: number;
}

interface Row { seq: number; function_name: string; version: string; request_id: string | null; ts: number; message: string; attempt: number | null }

/** What one stored line counts for: its message in bytes plus its row. */
export const rowBytes = (message: string): number => Buffer.byteLength(message, 'utf8') + 64;
const ROW_BYTES_SQL = 'LENGTH(CAST(message AS BLOB)) + 64';

/** One query answers at most this many bytes of messages (at least one line): page on with afterSeq. */
export const QUERY_MAX_BYTES = 8 * 1024 * 1024;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS logs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    function_name TEXT NOT NULL,
    version       TEXT NOT NULL,
    request_id    TEXT,
    ts            INTEGER NOT NULL,
    message       TEXT NOT NULL,
    attempt       INTEGER
  ) STRICT;
  CREATE INDEX IF NOT EXISTS logs_by_function ON logs(function_name, seq);
`;

/**
 * Function logs in their own SQLite file (DATA/logs.db), apart from the server's state so that writing them never
 * holds a lock the control plane waits for. Each function keeps at most functionCapBytes of lines and all together
 * at most capBytes, trimmed oldest first from the functions storing the most: a function flooding its log only
 * ever evicts its own lines. The file uses incremental auto-vacuum and a truncated WAL, so the space of deleted
 * lines goes back to the filesystem.
 *
 * Synchronous: the server runs it on a thread of its own (see writer.ts); tests may use it directly.
 */
export class LogStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly bytes = new Map<string, number>();
  private total = 0;
  private readonly capBytes: number;
  private readonly functionCapBytes: number;
  /** Free pages worth more than this are given back to the filesystem. */
  private readonly reclaimBytes: number;

  constructor(readonly file: string, retention: LogRetention = {}) {
    this.capBytes = retention.capBytes ?? 128 * 1024 * 1024;
    this.functionCapBytes = Math.min(retention.functionCapBytes ?? 16 * 1024 * 1024, this.capBytes);
    this.reclaimBytes = Math.min(8 * 1024 * 1024, Math.max(1024 * 1024, Math.floor(this.functionCapBytes / 4)));
    this.db = new Database(file);
    // auto_vacuum only takes effect on a database without tables: set it first.
    this.db.pragma('auto_vacuum = INCREMENTAL');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma(`journal_size_limit = ${4 * 1024 * 1024}`);
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare('INSERT INTO logs (function_name, version, request_id, ts, message, attempt) VALUES (?, ?, ?, ?, ?, ?)');
    this.recount();
  }

  private recount(): void {
    this.bytes.clear();
    this.total = 0;
    const rows = this.db.prepare(`SELECT function_name AS f, SUM(${ROW_BYTES_SQL}) AS b FROM logs GROUP BY function_name`).all() as { f: string; b: number }[];
    for (const r of rows) {
      this.bytes.set(r.f, r.b);
      this.total += r.b;
    }
  }

  /**
   * Move the lines of an older data directory (the `logs` table of thaw.db) here, keeping their sequence numbers,
   * and empty that table. Runs once: later starts find it empty.
   */
  importLegacy(stateDb: string): number {
    this.db.prepare('ATTACH DATABASE ? AS legacy').run(stateDb);
    try {
      const has = this.db.prepare("SELECT 1 FROM legacy.sqlite_master WHERE type = 'table' AND name = 'logs'").get() !== undefined;
      if (!has) return 0;
      const cols = (this.db.prepare('PRAGMA legacy.table_info(logs)').all() as { name: string }[]).map((c) => c.name);
      const attempt = cols.includes('attempt') ? 'attempt' : 'NULL';
      const moved = this.db.transaction(() => {
        const n = this.db.prepare(`INSERT OR IGNORE INTO logs (seq, function_name, version, request_id, ts, message, attempt)
          SELECT seq, function_name, version, request_id, ts, message, ${attempt} FROM legacy.logs ORDER BY seq`).run().changes;
        this.db.prepare('DELETE FROM legacy.logs').run();
        return n;
      })();
      if (moved > 0) {
        this.recount();
        this.retain([...this.bytes.keys()]);
      }
      return moved;
    } finally {
      this.db.prepare('DETACH DATABASE legacy').run();
    }
  }

  /** Store lines (one transaction), then trim what is over the caps. */
  append(rows: readonly LogRow[]): void {
    if (rows.length === 0) return;
    const touched = new Set<string>();
    this.db.transaction(() => {
      for (const l of rows) {
        this.insert.run(l.functionName, l.version, l.requestId, l.timestamp, l.message, l.attempt);
        const b = rowBytes(l.message);
        this.bytes.set(l.functionName, (this.bytes.get(l.functionName) ?? 0) + b);
        this.total += b;
        touched.add(l.functionName);
      }
    })();
    this.retain([...touched]);
  }

  /** Bytes of lines stored for a function (or all of them). */
  storedBytes(functionName?: string): number {
    return functionName === undefined ? this.total : (this.bytes.get(functionName) ?? 0);
  }

  private retain(touched: readonly string[]): void {
    let trimmed = false;
    for (const fn of touched) {
      const b = this.bytes.get(fn) ?? 0;
      if (b > this.functionCapBytes) {
        this.trimFunction(fn, Math.floor(this.functionCapBytes * 0.9));
        trimmed = true;
      }
    }
    if (this.total > this.capBytes) {
      this.trimLargest(Math.floor(this.capBytes * 0.9));
      trimmed = true;
    }
    if (trimmed) this.reclaim();
  }

  /**
   * Bring the total down to `target` by lowering the largest functions to one common level (water-filling): the
   * function storing the most loses lines first, and none goes below what a smaller one keeps.
   */
  private trimLargest(target: number): void {
    const sizes = [...this.bytes.entries()].sort((a, b) => b[1] - a[1]);
    const excess = this.total - target;
    let sum = 0;
    let level = 0;
    for (let k = 0; k < sizes.length; k++) {
      sum += (sizes[k] as [string, number])[1];
      const next = sizes[k + 1]?.[1] ?? 0;
      if (sum - (k + 1) * next >= excess) {
        level = Math.floor((sum - excess) / (k + 1));
        break;
      }
    }
    for (const [fn, b] of sizes) {
      if (b <= level) break;
      this.trimFunction(fn, level);
    }
  }

  /** Delete a function's oldest lines until it stores at most `target` bytes. */
  private trimFunction(fn: string, target: number): void {
    const have = this.bytes.get(fn) ?? 0;
    let excess = have - target;
    if (excess <= 0) return;
    const rows = this.db.prepare(`SELECT seq, ${ROW_BYTES_SQL} AS b FROM logs WHERE function_name = ? ORDER BY seq`).iterate(fn) as IterableIterator<{ seq: number; b: number }>;
    let cut = -1;
    let removed = 0;
    for (const r of rows) {
      excess -= r.b;
      removed += r.b;
      cut = r.seq;
      if (excess <= 0) break;
    }
    if (cut < 0) return;
    this.db.prepare('DELETE FROM logs WHERE function_name = ? AND seq <= ?').run(fn, cut);
    this.setBytes(fn, have - removed);
  }

  private setBytes(fn: string, b: number): void {
    this.total += b - (this.bytes.get(fn) ?? 0);
    if (b <= 0) this.bytes.delete(fn);
    else this.bytes.set(fn, b);
  }

  /** Give free pages back to the filesystem when there are enough of them, and truncate the WAL. */
  reclaim(force = false): void {
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    const page = this.db.pragma('page_size', { simple: true }) as number;
    if (force || free * page > this.reclaimBytes) {
      this.db.pragma('incremental_vacuum');
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    }
  }

  query(functionName: string, opts: LogQuery): LogLine[] {
    const limit = Math.min(Math.max(opts.limit ?? 1000, 1), 10000);
    const newest = opts.afterSeq === undefined && opts.since === undefined;
    const rows = this.db.prepare(`SELECT * FROM logs WHERE function_name = ? AND seq > ? AND ts >= ? AND (? IS NULL OR request_id = ?)
      ORDER BY seq ${newest ? 'DESC' : 'ASC'} LIMIT ?`)
      .iterate(functionName, opts.afterSeq ?? 0, opts.since ?? 0, opts.requestId ?? null, opts.requestId ?? null, limit) as IterableIterator<Row>;
    const out: LogLine[] = [];
    let bytes = 0;
    for (const r of rows) {
      bytes += r.message.length;
      if (out.length > 0 && bytes > QUERY_MAX_BYTES) break;
      out.push({
        seq: r.seq, functionName: r.function_name, version: r.version, requestId: r.request_id, timestamp: r.ts, message: r.message,
        ...(r.attempt === null ? {} : { attempt: r.attempt }),
      });
    }
    if (newest) out.reverse();
    return out;
  }

  deleteFunction(functionName: string): void {
    this.db.prepare('DELETE FROM logs WHERE function_name = ?').run(functionName);
    this.setBytes(functionName, 0);
    this.reclaim(true);
  }

  close(): void {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}
