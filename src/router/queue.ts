/**
 * The asynchronous invocation queue: the seam between the event processor (retries, event age, destinations)
 * and where events are kept. The embedded default is SQLite (sqlite-queue.ts); a cluster would put a stream
 * behind the same contract. Every implementation passes test/router/queue-conformance.ts.
 *
 * An event's life: put (durable once the promise resolves) → claim (leased by one consumer) → started (an attempt
 * is counted before the function runs, so a crash mid-attempt still counts it) → release (back in the queue, due
 * later, with its counters) or complete (gone, with its follow-up events added in the same step). Leases of a
 * consumer that stopped are freed by recover(), so an event in flight when a process died runs again.
 */

/** What the last attempt answered, kept for the record sent when an event is finally given up on. */
export interface AttemptResult {
  readonly statusCode: number;
  readonly executedVersion: string | null;
  readonly functionError?: string;
  /** Response payload as UTF-8 text. */
  readonly payload: string;
}

export interface NewEvent {
  /** The request id: stays the same across every attempt, as Lambda's does. */
  readonly requestId: string;
  readonly functionName: string;
  /** Qualifier as the caller invoked it ($LATEST, version, alias); null when unqualified. */
  readonly qualifier: string | null;
  readonly payload: Buffer;
  /** Client context as the caller sent it (base64 of a JSON object). */
  readonly clientContext: string | null;
  /** Epoch ms. */
  readonly enqueuedAt: number;
  /**
   * Where the event is in its chain of asynchronous deliveries (0 for an event a client sent; see loop-guard.ts).
   * Absent: 0.
   */
  readonly hops?: number;
}

export interface QueuedEvent extends NewEvent {
  readonly hops: number;
  /** Epoch ms before which the event is not claimed. */
  readonly notBefore: number;
  /** Times the event was sent to its function (approximateInvokeCount), interrupted attempts included. */
  readonly invokes: number;
  /** Function errors counted against MaximumRetryAttempts. */
  readonly failures: number;
  /** Times the event was throttled (never counted as an attempt). */
  readonly throttles: number;
  readonly lastResult: AttemptResult | null;
}

export interface Requeue {
  readonly notBefore: number;
  readonly invokes: number;
  readonly failures: number;
  readonly throttles: number;
  readonly lastResult: AttemptResult | null;
}

export interface EventQueue {
  /** Store a new event; it is durable when the promise resolves. */
  put(event: NewEvent): Promise<void>;
  /** Lease up to `max` events due at `now`, oldest due first. */
  claim(now: number, max: number): Promise<QueuedEvent[]>;
  /** An attempt of a leased event begins: its invoke count goes up by one. */
  started(requestId: string): Promise<void>;
  /** Give a leased event back, due at `next.notBefore`, with its new counters. */
  release(requestId: string, next: Requeue): Promise<void>;
  /** Remove a leased event whose outcome is handled and add its follow-up events, in one step. */
  complete(requestId: string, followUps: readonly NewEvent[]): Promise<void>;
  /** When the earliest unleased event is due (epoch ms), if there is one. */
  nextDue(): Promise<number | undefined>;
  /** Free the leases of consumers that are gone; returns how many events were freed. */
  recover(): Promise<number>;
  /** Events stored, leased or not. */
  depth(): Promise<number>;
}
