import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EventQueue, NewEvent } from '../../src/router/queue.js';

/** Two consumers of one store (as two processes would be), and a way to dispose of it. */
export interface QueueFixture {
  readonly a: EventQueue;
  readonly b: EventQueue;
  close(): Promise<void>;
}

const event = (n: number, enqueuedAt: number, extra: Partial<NewEvent> = {}): NewEvent => ({
  requestId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  functionName: 'fn',
  qualifier: null,
  payload: Buffer.from(JSON.stringify({ n })),
  clientContext: null,
  enqueuedAt,
  ...extra,
});

/** The contract of the asynchronous invocation queue (src/router/queue.ts); every implementation runs it. */
export function queueConformance(name: string, make: () => Promise<QueueFixture>): void {
  const withQueue = (fn: (f: QueueFixture) => Promise<void>) => async (): Promise<void> => {
    const f = await make();
    try {
      await fn(f);
    } finally {
      await f.close();
    }
  };

  describe(`EventQueue conformance: ${name}`, () => {
    test('a stored event is claimed once, with its fields and zero counters', withQueue(async ({ a }) => {
      const e = event(1, 1000, { qualifier: 'live', clientContext: 'eyJhIjoxfQ==' });
      await a.put(e);
      assert.equal(await a.depth(), 1);
      const [got, ...rest] = await a.claim(1000, 10);
      assert.equal(rest.length, 0);
      assert.ok(got !== undefined);
      assert.equal(got.requestId, e.requestId);
      assert.equal(got.functionName, 'fn');
      assert.equal(got.qualifier, 'live');
      assert.equal(got.clientContext, 'eyJhIjoxfQ==');
      assert.deepEqual(Buffer.from(got.payload), e.payload);
      assert.equal(got.enqueuedAt, 1000);
      assert.deepEqual([got.invokes, got.failures, got.throttles, got.lastResult], [0, 0, 0, null]);
      assert.deepEqual(await a.claim(1000, 10), [], 'a leased event is not claimed again');
      assert.equal(await a.nextDue(), undefined, 'no unleased event');
    }));

    test('events are due from their time on, oldest first, at most max at a time', withQueue(async ({ a }) => {
      await a.put(event(1, 3000));
      await a.put(event(2, 1000));
      await a.put(event(3, 2000));
      assert.equal(await a.nextDue(), 1000);
      assert.deepEqual(await a.claim(999, 10), []);
      assert.deepEqual((await a.claim(2500, 10)).map((e) => e.requestId.slice(-1)), ['2', '3']);
      assert.equal(await a.nextDue(), 3000);
      assert.deepEqual(await a.claim(5000, 0), []);
      assert.equal((await a.claim(5000, 1)).length, 1);
    }));

    test('started counts an attempt; release brings the event back later with its counters', withQueue(async ({ a }) => {
      await a.put(event(1, 1000));
      const [e] = await a.claim(1000, 1);
      assert.ok(e !== undefined);
      await a.started(e.requestId);
      const lastResult = { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled', payload: '{"errorMessage":"x"}' };
      await a.release(e.requestId, { notBefore: 5000, invokes: 1, failures: 1, throttles: 2, lastResult });
      assert.equal(await a.nextDue(), 5000);
      assert.deepEqual(await a.claim(4999, 1), []);
      const [again] = await a.claim(5000, 1);
      assert.ok(again !== undefined);
      assert.deepEqual([again.invokes, again.failures, again.throttles], [1, 1, 2]);
      assert.deepEqual(again.lastResult, lastResult);
      assert.equal(again.enqueuedAt, 1000, 'the age of an event is kept across retries');
    }));

    test('an attempt counted by started survives a lost lease', withQueue(async ({ a, b }) => {
      await a.put(event(1, 1000));
      const [e] = await a.claim(1000, 1);
      assert.ok(e !== undefined);
      await a.started(e.requestId);
      assert.equal(await b.recover(), 1, 'the other consumer takes over the lease of a consumer that is gone');
      const [taken] = await b.claim(1000, 1);
      assert.equal(taken?.invokes, 1);
    }));

    test('complete removes the event and adds its follow-ups in one step', withQueue(async ({ a }) => {
      await a.put(event(1, 1000));
      const [e] = await a.claim(1000, 1);
      assert.ok(e !== undefined);
      await a.complete(e.requestId, [event(2, 1500, { functionName: 'dest' }), event(3, 1500, { functionName: 'dlq' })]);
      assert.equal(await a.depth(), 2);
      const next = await a.claim(2000, 10);
      assert.deepEqual(next.map((x) => x.functionName).sort(), ['dest', 'dlq']);
      assert.ok(next.every((x) => x.invokes === 0));
    }));

    test('an event keeps its hop count, 0 unless given; follow-ups carry theirs', withQueue(async ({ a }) => {
      await a.put(event(1, 1000));
      await a.put(event(2, 1000, { hops: 7 }));
      const got = await a.claim(1000, 10);
      assert.deepEqual(got.map((x) => x.hops), [0, 7]);
      await a.complete((got[1] as { requestId: string }).requestId, [event(3, 1000, { hops: 16 })]);
      assert.deepEqual((await a.claim(1000, 10)).map((x) => x.hops), [16]);
    }));

    test('only the holder of a lease may start, release or complete the event', withQueue(async ({ a, b }) => {
      await a.put(event(1, 1000));
      await a.put(event(2, 1000));
      const [e] = await a.claim(1000, 1);
      assert.ok(e !== undefined);
      await assert.rejects(b.started(e.requestId));
      await assert.rejects(b.complete(e.requestId, [event(9, 1000)]));
      await assert.rejects(b.release(e.requestId, { notBefore: 1, invokes: 0, failures: 0, throttles: 0, lastResult: null }));
      assert.equal(await a.depth(), 2, 'a refused complete adds no follow-ups');
      const [free] = await b.claim(1000, 10);
      assert.ok(free !== undefined && free.requestId !== e.requestId);
      await assert.rejects(a.started(free.requestId), 'an event leased by another consumer');
      await a.complete(e.requestId, []);
      await assert.rejects(a.complete(e.requestId, []), 'a completed event is gone');
      assert.equal(await a.depth(), 1);
    }));
  });
}
