import type { LogLine, LogQuery, LogRetention, LogRow } from './store.js';

/** What the log thread is started with. */
export interface LogThreadData {
  readonly file: string;
  readonly retention: LogRetention;
  /** The server's state database, whose old `logs` table is moved into the log store once. */
  readonly legacyDb?: string;
}

/** Requests to the log thread, each answered once with the same id. */
export type LogRequest =
  | { readonly id: number; readonly type: 'append'; readonly rows: readonly LogRow[] }
  | { readonly id: number; readonly type: 'query'; readonly functionName: string; readonly query: LogQuery }
  | { readonly id: number; readonly type: 'delete'; readonly functionName: string }
  | { readonly id: number; readonly type: 'stats' }
  | { readonly id: number; readonly type: 'close' };

export interface LogStats { readonly storedBytes: number; readonly imported: number }

export interface LogAnswer { readonly id: number; readonly ok: true; readonly lines?: LogLine[]; readonly stats?: LogStats }

export type LogReply =
  | LogAnswer
  | { readonly id: number; readonly ok: false; readonly error: string }
  /** Sent once, when the store is open. */
  | { readonly id: 0; readonly ready: true; readonly imported: number };
