import { randomUUID } from 'node:crypto';
import type { Logger } from '../util/log.js';
import { isThawError } from '../util/errors.js';
import type { Registry } from '../control/registry.js';
import { functionArn } from '../control/arn.js';
import { functionTargetOf } from '../control/destinations.js';
import { ASYNC_DEFAULTS, type EventInvokeConfigs } from '../control/event-invoke-config.js';
import type { LogWriter } from '../logs/writer.js';
import { MAX_EVENT_PAYLOAD, type InvokeRequest, type Invoker } from './invoker.js';
import type { AttemptResult, EventQueue, NewEvent, QueuedEvent } from './queue.js';
import { invocationRecord, recordWithin, type RecordCondition } from './invocation-record.js';
import { MAX_CHAIN_INVOCATIONS, NOTICE_HOPS, followUpHops, isTerminal } from './loop-guard.js';

export interface AsyncInvokerOptions {
  readonly queue: EventQueue;
  readonly invoker: Invoker;
  readonly registry: Registry;
  readonly configs: EventInvokeConfigs;
  readonly logs: Pick<LogWriter, 'attemptStarted' | 'attemptEnded' | 'sync' | 'write'>;
  readonly region: string;
  readonly logger: Logger;
  /** Events run at once. */
  readonly concurrency: number;
  /** Wait before the first retry; the second waits twice as long (Lambda: about one, then two minutes). */
  readonly retryBaseMs: number;
}

/** The settings that apply to one event, in base units. */
interface Settings {
  readonly maxRetries: number;
  readonly maxAgeMs: number;
  readonly onSuccess: string | null;
  readonly onFailure: string | null;
  readonly deadLetter: string | null;
}

/** Longest wait of a throttled event before it is offered again (Lambda: up to 5 minutes). */
const MAX_THROTTLE_WAIT_MS = 5 * 60 * 1000;

/**
 * Event (asynchronous) invocations. An event is accepted once it is stored in the queue; it is then run
 * with bounded concurrency, retried after function errors (MaximumRetryAttempts, backoff), given up on when
 * older than MaximumEventAgeInSeconds, and its outcome is handed to the OnSuccess / OnFailure destination and
 * the function's dead-letter target. Those deliveries are events themselves, stored in the same step that
 * removes the finished event, so an outcome is never lost and never half-delivered. A throttled invocation
 * is not an attempt: the event waits (backing off) and is offered again.
 *
 * Processing is at least once: an event in flight when the process dies runs again after the restart.
 */
export class AsyncInvoker {
  private running = 0;
  private closed = false;
  private pumping = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: AsyncInvokerOptions) {}

  /** Take over events left by an earlier process (including those it was running) and start processing. */
  async start(): Promise<void> {
    const recovered = await this.o.queue.recover();
    const depth = await this.o.queue.depth();
    if (depth > 0) this.o.logger.info({ pending: depth, recovered }, 'async events pending from an earlier run');
    this.kick();
  }

  /** Validate and store an Event invocation; resolves with its request id once it is durable. */
  async accept(req: InvokeRequest): Promise<string> {
    this.o.invoker.check(req, MAX_EVENT_PAYLOAD);
    const requestId = randomUUID();
    await this.o.queue.put({
      requestId,
      functionName: req.functionName,
      qualifier: req.qualifier ?? null,
      payload: req.payload,
      clientContext: req.clientContextBase64 === undefined || req.clientContextBase64 === '' ? null : req.clientContextBase64,
      enqueuedAt: Date.now(),
    });
    this.kick();
    return requestId;
  }

  /** Stop taking events. Events in flight keep their lease and run again on the next start. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private kick(): void {
    this.pump().catch((e: unknown) => this.o.logger.error({ err: e }, 'async queue: pump failed'));
  }

  private async pump(): Promise<void> {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        const batch = await this.o.queue.claim(Date.now(), this.o.concurrency - this.running);
        if (this.closed) return;
        for (const e of batch) this.spawn(e);
        await this.arm();
      } while (this.again && !this.closed);
    } finally {
      this.pumping = false;
    }
  }

  /** Wake up when the next waiting event is due (a finishing event wakes the pump anyway). */
  private async arm(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running >= this.o.concurrency) return;
    const due = await this.o.queue.nextDue();
    if (due === undefined || this.closed) return;
    const wait = due - Date.now();
    if (wait <= 0) {
      this.again = true;
      return;
    }
    this.timer = setTimeout(() => this.kick(), Math.min(wait, 2 ** 31 - 1));
    this.timer.unref();
  }

  private spawn(e: QueuedEvent): void {
    this.running++;
    this.process(e)
      .catch((err: unknown) => this.o.logger.error({ err, requestId: e.requestId }, 'async event: processing failed; it runs again after a restart'))
      .finally(() => {
        this.running--;
        this.kick();
      });
  }

  private settings(functionName: string, qualifier: string | null): Settings {
    const c = this.o.configs.get(functionName, qualifier ?? '$LATEST');
    let deadLetter: string | null = null;
    try {
      deadLetter = this.o.registry.resolve(functionName, qualifier ?? undefined).version.config.deadLetterTarget ?? null;
    } catch {
      // The function or alias is gone: the attempt reports it.
    }
    return {
      maxRetries: c?.maximumRetryAttempts ?? ASYNC_DEFAULTS.maximumRetryAttempts,
      maxAgeMs: (c?.maximumEventAgeInSeconds ?? ASYNC_DEFAULTS.maximumEventAgeInSeconds) * 1000,
      onSuccess: c?.onSuccess ?? null,
      onFailure: c?.onFailure ?? null,
      deadLetter,
    };
  }

  private async process(e: QueuedEvent): Promise<void> {
    const s = this.settings(e.functionName, e.qualifier);
    if (Date.now() - e.enqueuedAt >= s.maxAgeMs) {
      await this.finish(e, 'EventAgeExceeded', e.invokes, e.lastResult, s);
      return;
    }
    await this.o.queue.started(e.requestId);
    const attempt = e.invokes + 1;
    this.o.logs.attemptStarted(e.requestId, attempt);
    let result: AttemptResult;
    try {
      const r = await this.o.invoker.invoke({
        functionName: e.functionName,
        qualifier: e.qualifier ?? undefined,
        payload: e.payload,
        ...(e.clientContext === null ? {} : { clientContextBase64: e.clientContext }),
      }, e.requestId, true);
      result = {
        statusCode: 200,
        executedVersion: r.executedVersion,
        ...(r.functionError === undefined ? {} : { functionError: r.functionError }),
        payload: r.payload.toString('utf8'),
      };
    } catch (err) {
      // Shutting down: the event keeps its lease and runs again on the next start.
      if (this.closed) return;
      if (isThawError(err) && (err.code === 'TooManyRequests' || err.code === 'ResourceConflict')) {
        // Throttled, or the version cannot run yet: not an attempt. Wait and offer the event again.
        const wait = Math.min(MAX_THROTTLE_WAIT_MS, Math.min(1000, this.o.retryBaseMs) * 2 ** Math.min(e.throttles, 20));
        this.o.logger.info({ requestId: e.requestId, fn: e.functionName, code: err.code, waitMs: wait }, 'async event throttled; it waits');
        await this.o.queue.release(e.requestId, { notBefore: Date.now() + wait, invokes: e.invokes, failures: e.failures, throttles: e.throttles + 1, lastResult: e.lastResult });
        return;
      }
      if (isThawError(err) && err.code === 'ResourceNotFound') {
        this.o.logger.warn({ requestId: e.requestId, fn: e.functionName, qualifier: e.qualifier }, 'async event dropped: the function no longer exists');
        await this.o.queue.complete(e.requestId, []);
        return;
      }
      this.o.logger.warn({ err, requestId: e.requestId, attempt }, 'async event: invocation failed');
      result = {
        statusCode: isThawError(err) ? err.status : 500,
        executedVersion: null,
        functionError: 'Unhandled',
        payload: JSON.stringify({ errorType: isThawError(err) ? err.type : 'ServiceException', errorMessage: isThawError(err) ? err.message : 'An internal error occurred.' }),
      };
    } finally {
      this.o.logs.attemptEnded(e.requestId);
    }
    // The attempt's lines are stored before its outcome is: after a crash, the log shows every finished attempt.
    await this.o.logs.sync().catch((err: unknown) => this.o.logger.warn({ err, requestId: e.requestId }, 'log lines of an async attempt not stored'));
    if (this.closed) return;
    if (result.functionError === undefined) {
      await this.finish(e, 'Success', attempt, result, s);
      return;
    }
    const failures = e.failures + 1;
    if (failures > s.maxRetries) {
      await this.finish(e, 'RetriesExhausted', attempt, result, s);
      return;
    }
    // Retry with backoff, but no later than the moment the event gets too old (then it is given up on).
    const notBefore = Math.min(Date.now() + this.o.retryBaseMs * 2 ** (failures - 1), e.enqueuedAt + s.maxAgeMs);
    this.o.logger.debug({ requestId: e.requestId, attempt, retryAt: new Date(notBefore).toISOString() }, 'async event failed; retry scheduled');
    await this.o.queue.release(e.requestId, { notBefore, invokes: attempt, failures, throttles: e.throttles, lastResult: result });
  }

  /** The event is done: remove it and, in the same step, queue its destination and dead-letter deliveries. */
  private async finish(e: QueuedEvent, condition: RecordCondition, invokes: number, result: AttemptResult | null, s: Settings): Promise<void> {
    const now = Date.now();
    const deliveries: Delivery[] = [];
    const deliver = (arn: string, payload: Buffer): void => {
      const t = functionTargetOf(arn);
      if (t === undefined) {
        this.o.logger.warn({ requestId: e.requestId, destination: arn }, 'async event: destination is not a function ARN; not delivered');
        return;
      }
      deliveries.push({ name: t.name, qualifier: t.qualifier ?? null, payload });
    };
    const destination = condition === 'Success' ? s.onSuccess : s.onFailure;
    if (destination !== null) {
      const record = invocationRecord({
        requestId: e.requestId,
        functionArn: functionArn(this.o.region, e.functionName, e.qualifier ?? '$LATEST'),
        condition,
        approximateInvokeCount: invokes,
        requestPayload: e.payload,
        result,
        timestamp: now,
      });
      // A record obeys the event size limit like any event: without its payloads when they make it too large.
      deliver(destination, recordWithin(record, MAX_EVENT_PAYLOAD));
    }
    if (condition !== 'Success' && s.deadLetter !== null) deliver(s.deadLetter, e.payload.length === 0 ? Buffer.from('{}') : e.payload);
    const followUps = this.chain(e, deliveries, now);
    if (condition !== 'Success') {
      this.o.logger.warn({ requestId: e.requestId, fn: e.functionName, condition, invokes, delivered: followUps.length }, 'async event given up on');
    }
    await this.o.queue.complete(e.requestId, followUps);
  }

  /**
   * The events that carry an event's deliveries on, within its chain's invocations (loop-guard.ts). A chain out of
   * invocations is stopped: each delivery is dropped and recorded in the log of the function it was headed for,
   * and one of them is handed as a notice to that function's on-failure destination (else its dead-letter
   * target). One notice per stopped event, not per delivery: a wide tree must not multiply them.
   */
  private chain(e: QueuedEvent, deliveries: readonly Delivery[], now: number): NewEvent[] {
    if (deliveries.length === 0) return [];
    const event = (d: Delivery, payload: Buffer, hops: number): NewEvent =>
      ({ requestId: randomUUID(), functionName: d.name, qualifier: d.qualifier, payload, clientContext: null, enqueuedAt: now, hops });
    if (isTerminal(e.hops)) {
      this.o.logger.warn({ requestId: e.requestId, fn: e.functionName, dropped: deliveries.length }, 'async event: recursive loop stopped; the outcome of a stopped event is not delivered');
      return [];
    }
    const hops = followUpHops(e.hops, deliveries.length);
    if (hops < MAX_CHAIN_INVOCATIONS) return deliveries.map((d) => event(d, d.payload, hops));
    let notice: NewEvent | undefined;
    for (const d of deliveries) {
      const source = functionArn(this.o.region, e.functionName, e.qualifier ?? '$LATEST');
      const target = functionArn(this.o.region, d.name, d.qualifier ?? '$LATEST');
      this.o.logger.warn({ requestId: e.requestId, from: source, to: target }, 'async event: recursive loop detected; invocation stopped');
      this.o.logs.write(d.name, d.qualifier ?? '$LATEST', {
        requestId: null,
        timestamp: now,
        message: `Recursive invocation loop detected: an event from ${source} (RequestId: ${e.requestId}) was not invoked; its chain made ${MAX_CHAIN_INVOCATIONS} invocations`,
      }, true);
      if (notice !== undefined) continue;
      const t = this.settings(d.name, d.qualifier);
      const onFailure = t.onFailure === null ? undefined : functionTargetOf(t.onFailure);
      const dlq = t.deadLetter === null ? undefined : functionTargetOf(t.deadLetter);
      if (onFailure !== undefined) {
        const record = invocationRecord({
          requestId: randomUUID(), functionArn: target, condition: 'RecursiveInvocationDetected', approximateInvokeCount: 0,
          requestPayload: d.payload, result: null, timestamp: now,
        });
        notice = event({ name: onFailure.name, qualifier: onFailure.qualifier ?? null, payload: d.payload }, recordWithin(record, MAX_EVENT_PAYLOAD), NOTICE_HOPS);
      } else if (dlq !== undefined) {
        notice = event({ name: dlq.name, qualifier: dlq.qualifier ?? null, payload: d.payload }, d.payload, NOTICE_HOPS);
      }
    }
    return notice === undefined ? [] : [notice];
  }
}

/** A destination or dead-letter delivery of a finished event, to a function. */
interface Delivery {
  readonly name: string;
  readonly qualifier: string | null;
  readonly payload: Buffer;
}
