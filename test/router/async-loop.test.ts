import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutFunctionEventInvokeConfigCommand } from '@aws-sdk/client-lambda';
import { startServer, type RunningServer } from '../helpers/server.js';
import { createFunction, fnArn, invokeEvent, logLines, recorded, waitFor } from '../helpers/async.js';

/**
 * Finding 11 of issue 10 (asynchronous part): destination cycles (A → B → A on OnFailure and dead-letter)
 * multiplied without bound (one event became 15,409 queued events in 12 s), and destination records grew past
 * the 256 KB event limit. Chains now stop like Lambda's recursive loop detection, and records obey the limit.
 */

/** Fails every time, logging what it got: its size and, for a record, its condition. */
const FAILING = `exports.handler = async (event) => {
  console.log('GOT ' + JSON.stringify({ size: JSON.stringify(event).length, condition: event.requestContext?.condition ?? null }));
  throw new Error('always fails');
};`;

interface Got { size: number; condition: string | null }

/** Waits until the functions' invocation counts stop changing (3 s without change); fails fast when they run away. */
async function settled(s: RunningServer, names: readonly string[], limit: number): Promise<Map<string, Got[]>> {
  let last = -1;
  let stableSince = Date.now();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const got = new Map<string, Got[]>();
    for (const n of names) got.set(n, await recorded<Got>(s.url, n, 'GOT'));
    const total = [...got.values()].reduce((a, g) => a + g.length, 0);
    assert.ok(total <= limit, `the chain ran away: ${total} invocations (${names.map((n) => `${n}: ${got.get(n)?.length}`).join(', ')})`);
    if (total !== last) {
      last = total;
      stableSince = Date.now();
    } else if (total > 0 && Date.now() - stableSince > 3000) {
      return got;
    }
    assert.ok(Date.now() < deadline, 'the chain did not settle');
    await new Promise((r) => setTimeout(r, 300));
  }
}

describe('asynchronous chains stop like Lambda\'s recursive loop detection; records obey the event size limit', () => {
  let s: RunningServer;

  before(async () => {
    s = await startServer({ args: ['--async-retry-base', '200', '--no-stem-cells'] });
  });
  after(async () => {
    await s.stop();
  });

  test('A → B → A on OnFailure: 16 invocations, then the stopped event once to the on-failure destination', async () => {
    for (const [me, other] of [['tick', 'tock'], ['tock', 'tick']] as const) {
      await createFunction(s.client, me, FAILING);
      await s.client.send(new PutFunctionEventInvokeConfigCommand({
        FunctionName: me, MaximumRetryAttempts: 0, DestinationConfig: { OnFailure: { Destination: fnArn(other) } },
      }));
    }
    await invokeEvent(s.client, 'tick', { start: true });
    const got = await settled(s, ['tick', 'tock'], 40);
    const conditions = [...got.values()].flat().map((g) => g.condition);
    assert.equal(conditions.filter((c) => c !== 'RecursiveInvocationDetected').length, 16, JSON.stringify(conditions));
    assert.equal(conditions.filter((c) => c === 'RecursiveInvocationDetected').length, 1, 'the stopped event goes to the on-failure destination once');
    const lines = [...(await logLines(s.url, 'tick')), ...(await logLines(s.url, 'tock'))].map((l) => l.message);
    assert.ok(lines.some((l) => /Recursive invocation loop detected/.test(l)), 'the stop is recorded in the log');
  });

  test('A ⇄ B on both OnFailure and dead-letter: a bounded number of invocations, not an explosion', async () => {
    for (const [me, other] of [['ping', 'pong'], ['pong', 'ping']] as const) {
      await createFunction(s.client, me, FAILING, { DeadLetterConfig: { TargetArn: fnArn(other) } });
      await s.client.send(new PutFunctionEventInvokeConfigCommand({
        FunctionName: me, MaximumRetryAttempts: 0, DestinationConfig: { OnFailure: { Destination: fnArn(other) } },
      }));
    }
    await invokeEvent(s.client, 'ping', { start: true });
    // Every event fans out in two: before, 2^n events after n hops. Now the tree shares 16 invocations, plus one
    // notice for each event whose deliveries were stopped (at most 8 here).
    const got = await settled(s, ['ping', 'pong'], 40);
    const all = [...got.values()].flat();
    assert.ok(all.length <= 16 + 8, `${all.length} invocations`);
    assert.ok(all.length >= 4, `${all.length} invocations`);
    assert.ok(all.every((g) => g.size <= 256 * 1024), 'every event within the 256 KB event limit');
  });

  test('a record that would exceed 256 KB is delivered without its payloads', async () => {
    await createFunction(s.client, 'sizes', `exports.handler = async (event) => {
      console.log('SIZE ' + JSON.stringify({ size: JSON.stringify(event).length, keys: Object.keys(event).sort(), id: event.requestContext.requestId }));
      return 'ok';
    };`);
    // Answers 1 MB: a record with it would be 4 times the limit.
    await createFunction(s.client, 'big', `exports.handler = async (event) => 'x'.repeat(1024 * 1024);`);
    await s.client.send(new PutFunctionEventInvokeConfigCommand({
      FunctionName: 'big', MaximumRetryAttempts: 0, DestinationConfig: { OnSuccess: { Destination: fnArn('sizes') } },
    }));
    const small = await invokeEvent(s.client, 'big', { pad: 'y'.repeat(1000) });
    // An event just under 256 KB: with the record around it, even the request payload no longer fits.
    const large = await invokeEvent(s.client, 'big', { pad: 'y'.repeat(256 * 1024 - 20) });
    type Size = { size: number; keys: string[]; id: string };
    const of = (id: string): Promise<Size> => waitFor(`the record of ${id}`, 60_000, async () =>
      (await recorded<Size>(s.url, 'sizes', 'SIZE')).find((r) => r.id === id));
    const a = await of(small);
    assert.deepEqual(a.keys, ['requestContext', 'requestPayload', 'responseContext', 'timestamp', 'version']);
    assert.ok(a.size < 4096);
    const b = await of(large);
    assert.deepEqual(b.keys, ['requestContext', 'responseContext', 'timestamp', 'version']);
    assert.ok(b.size <= 256 * 1024);
  });

  test('a response nested deeper than JSON can be written back is left out of the record, which is delivered', async () => {
    // The response parses (JSON.parse is iterative) but JSON.stringify would overflow its stack: the record must
    // still reach the destination, without that payload, instead of failing the event and re-running it forever.
    await createFunction(s.client, 'deep', `const http = require('node:http');
    exports.handler = async (event, context) => {
      const body = '{"deep":' + '['.repeat(200000) + ']'.repeat(200000) + '}';
      await new Promise((done) => {
        const r = http.request({ socketPath: '/var/run/thaw/runtime-api.sock', method: 'POST',
          path: '/2018-06-01/runtime/invocation/' + context.awsRequestId + '/response' }, (x) => { x.resume(); x.on('end', done); });
        r.end(body);
      });
      return 'answered already';
    };`);
    await s.client.send(new PutFunctionEventInvokeConfigCommand({
      FunctionName: 'deep', MaximumRetryAttempts: 0, DestinationConfig: { OnSuccess: { Destination: fnArn('sizes') } },
    }));
    const id = await invokeEvent(s.client, 'deep', { shallow: true });
    type Size = { size: number; keys: string[]; id: string };
    const r = await waitFor(`the record of ${id}`, 60_000, async () => (await recorded<Size>(s.url, 'sizes', 'SIZE')).find((x) => x.id === id));
    assert.deepEqual(r.keys, ['requestContext', 'requestPayload', 'responseContext', 'timestamp', 'version']);
  });
});
