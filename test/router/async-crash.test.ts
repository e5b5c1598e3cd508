import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PutFunctionEventInvokeConfigCommand } from '@aws-sdk/client-lambda';
import { startServer } from '../helpers/server.js';
import { createFunction, fnArn, invokeEvent, logLines, recordFor, recorder, waitFor } from '../helpers/async.js';

const ARGS = ['--async-retry-base', '200'];

test('every Event invocation accepted before kill -9 is processed after a restart on the same data directory', async () => {
  const first = await startServer({ args: ARGS });
  let second: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await createFunction(first.client, 'sink', recorder('RECORD'));
    await createFunction(first.client, 'slow', 'exports.handler = async (e) => { await new Promise((r) => setTimeout(r, 1500)); return { done: e.n }; };', { Timeout: 10 });
    await first.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'slow', DestinationConfig: { OnSuccess: { Destination: fnArn('sink') } } }));
    const ids: string[] = [];
    for (let n = 0; n < 8; n++) ids.push(await invokeEvent(first.client, 'slow', { n }));
    // Four run at a time: once the first ones have finished, the next ones are in flight.
    await waitFor('a finished attempt', 30_000, async () => ((await logLines(first.url, 'slow')).some((l) => l.message.startsWith('REPORT ')) ? true : undefined));
    await first.kill();

    second = await startServer({ dataDir: first.dataDir, args: ARGS });
    const records = [];
    for (const [n, id] of ids.entries()) {
      const rec = await recordFor(second.url, 'sink', 'RECORD', id, 120_000);
      assert.equal(rec.requestContext.condition, 'Success');
      assert.equal(rec.requestContext.functionArn, fnArn('slow', '$LATEST'));
      assert.deepEqual(rec.requestPayload, { n });
      assert.deepEqual(rec.responsePayload, { done: n });
      records.push(rec);
    }
    assert.ok(records.some((r) => r.requestContext.approximateInvokeCount >= 2), 'some events were in flight when the server was killed, and ran again');
  } finally {
    await first.kill();
    await second?.stop();
  }
});
