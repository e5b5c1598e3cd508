import { Worker } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import { ThawError } from '../util/errors.js';
import { LogBudget, type LogRate } from './budget.js';
import type { LogAnswer, LogReply, LogRequest, LogStats, LogThreadData } from './messages.js';
import { rowBytes, type LogLine, type LogQuery, type LogRetention, type LogRow } from './store.js';

/** One line of a function's log, as an environment hands it over. */
export interface LogEntry { readonly requestId: string | null; readonly timestamp: number; readonly message: string }

/** Where environments send their log lines. */
export interface LogSink {
  /**
   * Store a line of `functionName`'s log. Platform lines (START, END, REPORT, INIT_*, markers) are always kept;
   * the function's own lines may be dropped when storage is behind.
   */
  write(functionName: string, version: string, entry: LogEntry, platform: boolean): void;
  /** May the function's environments keep `bytes` more of its output? False while it is over its log rate. */
  admit(functionName: string, bytes: number): boolean;
}

export interface LogWriterOptions {
  /** DATA/logs.db */
  readonly file: string;
  readonly retention?: LogRetention;
  readonly rate?: LogRate;
  /** The server's state database, whose old `logs` table is moved into the log store once. */
  readonly legacyDb?: string;
  readonly logger: Logger;
  /** Lines wait at most this long before they are handed to the log thread (default 50 ms). */
  readonly flushMs?: number;
  /** Bytes handed to the log thread and not yet stored, at most (default 8 MiB). */
  readonly maxInFlightBytes?: number;
  /** A function's lines waiting for the log thread, at most (default 2 MiB): beyond it its own lines are dropped. */
  readonly maxPendingBytesPerFunction?: number;
}

interface Pending { rows: LogRow[]; bytes: number; dropped: number }

/**
 * The server's side of the log store: lines are queued per function and handed in batches to the log thread
 * (thread.ts), which writes them to DATA/logs.db; the event loop only queues. Memory is bounded: batches in
 * flight are capped, and a function whose queue is full loses its own lines (counted, and announced by a marker
 * line when it can be stored again), never another function's. Functions with the least waiting go first.
 */
export class LogWriter implements LogSink {
  private readonly pending = new Map<string, Pending>();
  private readonly budgets = new Map<string, LogBudget>();
  /** Request ids of asynchronous invocations in progress → their attempt number, stamped on their lines. */
  private readonly attempts = new Map<string, number>();
  private readonly calls = new Map<number, { resolve: (r: LogAnswer) => void; reject: (e: Error) => void; bytes: number }>();
  private nextId = 1;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A flush left lines behind because of the in-flight cap: the next stored batch makes room for them. */
  private heldBack = false;
  private closed = false;
  /** The log thread has died: lines are dropped and queries fail until the server restarts. */
  private dead = false;
  private readonly flushMs: number;
  private readonly maxInFlight: number;
  private readonly maxPending: number;

  /** Lines moved from an older data directory's thaw.db when the store opened. */
  readonly imported: number;

  private constructor(private readonly o: LogWriterOptions, private readonly worker: Worker, imported: number) {
    this.imported = imported;
    this.flushMs = o.flushMs ?? 50;
    this.maxInFlight = o.maxInFlightBytes ?? 8 * 1024 * 1024;
    this.maxPending = o.maxPendingBytesPerFunction ?? 2 * 1024 * 1024;
    worker.on('message', (m: LogReply) => this.onReply(m));
    worker.on('error', (err) => {
      o.logger.error({ err }, 'log thread failed');
      this.failAll(err);
    });
    worker.on('exit', (code) => {
      this.dead = true;
      if (!this.closed) o.logger.error({ code }, 'log thread exited');
      this.failAll(new Error('the log thread has exited'));
    });
  }

  /** Start the log thread; resolves once DATA/logs.db is open. */
  static async open(o: LogWriterOptions): Promise<LogWriter> {
    const data: LogThreadData = { file: o.file, retention: o.retention ?? {}, ...(o.legacyDb === undefined ? {} : { legacyDb: o.legacyDb }) };
    const worker = new Worker(new URL('./thread.js', import.meta.url), { workerData: data });
    // The server's listeners keep the process alive, not the log thread (a failed start must still exit).
    worker.unref();
    const imported = await new Promise<number>((resolve, reject) => {
      const onMessage = (m: LogReply): void => {
        if ('ready' in m) {
          worker.off('error', reject);
          resolve(m.imported);
        }
      };
      worker.once('message', onMessage);
      worker.once('error', reject);
    });
    if (imported > 0) o.logger.info({ lines: imported }, 'log lines moved from thaw.db to logs.db');
    return new LogWriter(o, worker, imported);
  }

  write(functionName: string, version: string, entry: LogEntry, platform: boolean): void {
    if (this.closed || this.dead) return;
    let p = this.pending.get(functionName);
    if (p === undefined) this.pending.set(functionName, (p = { rows: [], bytes: 0, dropped: 0 }));
    const bytes = rowBytes(entry.message);
    if (!platform && p.bytes + bytes > this.maxPending) {
      p.dropped += bytes;
      return;
    }
    const attempt = entry.requestId === null ? null : (this.attempts.get(entry.requestId) ?? null);
    if (p.dropped > 0) {
      const message = `[thaw] ${p.dropped} bytes of log output dropped: log storage fell behind`;
      p.rows.push({ functionName, version, requestId: entry.requestId, timestamp: entry.timestamp, message, attempt });
      p.bytes += rowBytes(message);
      p.dropped = 0;
    }
    p.rows.push({ functionName, version, requestId: entry.requestId, timestamp: entry.timestamp, message: entry.message, attempt });
    p.bytes += bytes;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.flushMs);
  }

  admit(functionName: string, bytes: number): boolean {
    let b = this.budgets.get(functionName);
    if (b === undefined) this.budgets.set(functionName, (b = new LogBudget(this.o.rate)));
    return b.take(bytes);
  }

  /**
   * Lines of `requestId` queued from now until attemptEnded are stamped with `attempt`: the attempts of an
   * asynchronous invocation share its request id, as Lambda's do.
   */
  attemptStarted(requestId: string, attempt: number): void {
    this.attempts.set(requestId, attempt);
  }

  attemptEnded(requestId: string): void {
    this.attempts.delete(requestId);
  }

  /** Lines of a function, including every line queued before the call. */
  async query(functionName: string, query: LogQuery): Promise<LogLine[]> {
    this.flush(true);
    return (await this.call({ type: 'query', functionName, query }, 0)).lines ?? [];
  }

  async deleteFunction(functionName: string): Promise<void> {
    this.pending.delete(functionName);
    this.budgets.delete(functionName);
    await this.call({ type: 'delete', functionName }, 0);
  }

  /** Resolves once every line queued before the call is stored (committed in DATA/logs.db). */
  async sync(): Promise<void> {
    this.flush(true);
    // The log thread answers in order: once this is answered, every append before it is committed.
    await this.call({ type: 'stats' }, 0);
  }

  async stats(): Promise<LogStats> {
    this.flush(true);
    const r = await this.call({ type: 'stats' }, 0);
    return r.stats ?? { storedBytes: 0, imported: 0 };
  }

  /** Store what is queued, then stop the log thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush(true);
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    try {
      await this.call({ type: 'close' }, 0);
    } catch (err) {
      this.o.logger.warn({ err }, 'log store did not close cleanly');
    }
    await this.worker.terminate();
  }

  /**
   * Hand queued lines to the log thread, functions with the least queued first, while the bytes in flight stay
   * under the cap (`all`: everything, for a query that must see it). What is left waits for a batch to be stored.
   */
  private flush(all = false): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const queued = [...this.pending.entries()].filter(([, p]) => p.rows.length > 0).sort((a, b) => a[1].bytes - b[1].bytes);
    const rows: LogRow[] = [];
    let bytes = 0;
    this.heldBack = false;
    for (const [fn, p] of queued) {
      if (!all && rows.length > 0 && this.inFlight + bytes + p.bytes > this.maxInFlight) {
        this.heldBack = true;
        break;
      }
      rows.push(...p.rows);
      bytes += p.bytes;
      this.pending.delete(fn);
      // Keep a function's dropped count for the marker on its next stored line.
      if (p.dropped > 0) this.pending.set(fn, { rows: [], bytes: 0, dropped: p.dropped });
    }
    if (rows.length === 0) return;
    this.call({ type: 'append', rows }, bytes).catch((err: unknown) => this.o.logger.warn({ err, lines: rows.length }, 'log lines could not be stored'));
  }

  private call(req: DistributiveOmit<LogRequest, 'id'>, bytes: number): Promise<LogAnswer> {
    if (this.dead || (this.closed && req.type !== 'close')) return Promise.reject(new ThawError('ServiceUnavailable', 'The log store is not available.'));
    const id = this.nextId++;
    this.inFlight += bytes;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject, bytes });
      this.worker.postMessage({ ...req, id } as LogRequest);
    });
  }

  private onReply(m: LogReply): void {
    if ('ready' in m) return;
    const c = this.calls.get(m.id);
    if (c === undefined) return;
    this.calls.delete(m.id);
    this.inFlight -= c.bytes;
    if (m.ok) c.resolve(m);
    else c.reject(new Error(m.error));
    // Room again: hand over what waited for it (other lines wait for the timer, so that batches stay large).
    if (this.heldBack && !this.closed) this.flush();
  }

  private failAll(err: Error): void {
    for (const c of this.calls.values()) c.reject(err);
    this.calls.clear();
    this.inFlight = 0;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
