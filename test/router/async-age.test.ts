import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PutFunctionEventInvokeConfigCommand } from '@aws-sdk/client-lambda';
import { startServer } from '../helpers/server.js';
import { createFunction, fnArn, invokeEvent, logLines, recordFor, recorder } from '../helpers/async.js';

test('an event older than MaximumEventAgeInSeconds is given up on: EventAgeExceeded to OnFailure', async () => {
  // The retry would come after 70 s; the event's age limit (60 s, the smallest allowed) comes first.
  const s = await startServer({ args: ['--async-retry-base', '70000'] });
  try {
    await createFunction(s.client, 'sink', recorder('RECORD'));
    await createFunction(s.client, 'old', "exports.handler = async () => { throw new Error('always'); };");
    await s.client.send(new PutFunctionEventInvokeConfigCommand({
      FunctionName: 'old', MaximumEventAgeInSeconds: 60, MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: fnArn('sink') } },
    }));
    const sent = Date.now();
    const id = await invokeEvent(s.client, 'old', { age: 'test' });
    const rec = await recordFor(s.url, 'sink', 'RECORD', id, 120_000);
    assert.deepEqual(rec.requestContext, { requestId: id, functionArn: fnArn('old', '$LATEST'), condition: 'EventAgeExceeded', approximateInvokeCount: 1 });
    assert.deepEqual(rec.requestPayload, { age: 'test' });
    assert.deepEqual(rec.responseContext, { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' });
    assert.equal((rec.responsePayload as { errorMessage: string }).errorMessage, 'always');
    assert.ok(Date.parse(rec.timestamp) - sent >= 59_000, `given up on at ${rec.timestamp}, not before the event was 60 s old`);
    const starts = (await logLines(s.url, 'old')).filter((l) => l.requestId === id && l.message.startsWith('START '));
    assert.equal(starts.length, 1, 'no attempt after the age limit');
  } finally {
    await s.stop();
  }
});
