import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { statementCache, type Db } from '../control/db.js';
import { ThawError } from '../util/errors.js';
import type { AttemptResult, EventQueue, NewEvent, QueuedEvent, Requeue } from './queue.js';

interface Row {
  request_id: string; function_name: string; qualifier: string | null; payload: Buffer; client_context: string | null;
  enqueued_at: number; not_before: number; invokes: number; failures: number; throttles: number; last_result: string | null;
  hops: number;
}

const toEvent = (r: Row): QueuedEvent => Object.freeze({
  requestId: r.request_id,
  functionName: r.function_name,
  qualifier: r.qualifier,
  payload: r.payload,
  clientContext: r.client_context,
  enqueuedAt: r.enqueued_at,
  hops: r.hops,
  notBefore: r.not_before,
  invokes: r.invokes,
  failures: r.failures,
  throttles: r.throttles,
  lastResult: r.last_result === null ? null : (JSON.parse(r.last_result) as AttemptResult),
});

/**
 * The async queue in the Thaw database (table async_events). One process owns a data directory, so a lease is
 * this consumer's token; recover() frees every other token, which is what a restart after a crash needs. Each
 * call is one transaction; in WAL mode a committed row survives the process being killed.
 */
export class SqliteEventQueue implements EventQueue {
  private readonly sql: (text: string) => Database.Statement;

  /** `consumer`: this process's lease token. */
  constructor(private readonly db: Db, private readonly consumer: string = randomUUID()) {
    this.sql = statementCache(db);
  }

  private insert(e: NewEvent, notBefore: number): void {
    this.sql(`INSERT INTO async_events (request_id, function_name, qualifier, payload, client_context, enqueued_at, not_before, hops)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(e.requestId, e.functionName, e.qualifier, e.payload, e.clientContext, e.enqueuedAt, notBefore, e.hops ?? 0);
  }

  async put(event: NewEvent): Promise<void> {
    this.insert(event, event.enqueuedAt);
  }

  async claim(now: number, max: number): Promise<QueuedEvent[]> {
    if (max <= 0) return [];
    return this.db.transaction(() => {
      const rows = this.sql('SELECT * FROM async_events WHERE lease IS NULL AND not_before <= ? ORDER BY not_before, id LIMIT ?').all(now, max) as Row[];
      const lease = this.sql('UPDATE async_events SET lease = ? WHERE request_id = ?');
      for (const r of rows) lease.run(this.consumer, r.request_id);
      return rows.map(toEvent);
    })();
  }

  /** Run `sql` on a leased event, failing loudly when this consumer does not hold its lease. */
  private onLeased(requestId: string, sql: string, ...params: unknown[]): void {
    const r = this.sql(sql).run(...params, requestId, this.consumer);
    if (r.changes !== 1) throw new ThawError('Service', `async event ${requestId} is not leased by this consumer`);
  }

  async started(requestId: string): Promise<void> {
    this.onLeased(requestId, 'UPDATE async_events SET invokes = invokes + 1 WHERE request_id = ? AND lease = ?');
  }

  async release(requestId: string, next: Requeue): Promise<void> {
    this.onLeased(requestId, `UPDATE async_events SET lease = NULL, not_before = ?, invokes = ?, failures = ?, throttles = ?, last_result = ?
      WHERE request_id = ? AND lease = ?`, next.notBefore, next.invokes, next.failures, next.throttles, next.lastResult === null ? null : JSON.stringify(next.lastResult));
  }

  async complete(requestId: string, followUps: readonly NewEvent[]): Promise<void> {
    this.db.transaction(() => {
      this.onLeased(requestId, 'DELETE FROM async_events WHERE request_id = ? AND lease = ?');
      for (const e of followUps) this.insert(e, e.enqueuedAt);
    })();
  }

  async nextDue(): Promise<number | undefined> {
    const r = this.sql('SELECT MIN(not_before) AS t FROM async_events WHERE lease IS NULL').get() as { t: number | null };
    return r.t ?? undefined;
  }

  async recover(): Promise<number> {
    return this.sql('UPDATE async_events SET lease = NULL WHERE lease IS NOT NULL AND lease != ?').run(this.consumer).changes;
  }

  async depth(): Promise<number> {
    return (this.sql('SELECT COUNT(*) AS n FROM async_events').get() as { n: number }).n;
  }
}
