import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateAliasCommand, DeleteAliasCommand, DeleteFunctionEventInvokeConfigCommand, GetFunctionConfigurationCommand,
  GetFunctionEventInvokeConfigCommand, ListFunctionEventInvokeConfigsCommand, PublishVersionCommand,
  PutFunctionEventInvokeConfigCommand, UpdateFunctionConfigurationCommand, UpdateFunctionEventInvokeConfigCommand,
} from '@aws-sdk/client-lambda';
import { startServer, type RunningServer } from '../helpers/server.js';
import { createFunction, fnArn, invokeEvent, logLines, recordFor, recorded, recorder, waitFor } from '../helpers/async.js';
import { cliEnv, runThaw } from '../cli/run.js';

const FAILING = `exports.handler = async (event) => { console.log('attempt for', JSON.stringify(event)); throw new Error('asked to fail'); };`;
/** Fails the first time it sees a key, succeeds the second time (one warm environment keeps the count). */
const FLAKY = `const seen = new Map();
exports.handler = async (event) => {
  const n = (seen.get(event.key) ?? 0) + 1;
  seen.set(event.key, n);
  if (n < 2) throw new Error('first try fails');
  return { ok: event.key, n };
};`;

async function rejects(p: Promise<unknown>, name: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    const err = e as { name?: string; message?: string };
    assert.equal(err.name, name, `expected ${name}, got ${err.name}: ${err.message}`);
    if (message !== undefined) assert.match(err.message ?? '', message);
    return true;
  });
}

describe('Event invocations: EventInvokeConfig, retries, destinations, dead-letter targets', () => {
  let s: RunningServer;

  before(async () => {
    // Retries after 200 ms and 400 ms instead of Lambda's minutes.
    s = await startServer({ args: ['--async-retry-base', '200'] });
    await createFunction(s.client, 'sink', recorder('RECORD'));
  });
  after(async () => {
    await s.stop();
  });

  test('EventInvokeConfig: Put, Get, Update, List and Delete per qualifier', async () => {
    await createFunction(s.client, 'cfg', 'exports.handler = async () => 1;');
    await s.client.send(new PublishVersionCommand({ FunctionName: 'cfg' }));
    await s.client.send(new CreateAliasCommand({ FunctionName: 'cfg', Name: 'live', FunctionVersion: '1' }));
    await rejects(s.client.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'cfg' })), 'ResourceNotFoundException', /doesn't have an EventInvokeConfig/);

    const started = Date.now();
    const put = await s.client.send(new PutFunctionEventInvokeConfigCommand({
      FunctionName: 'cfg', MaximumRetryAttempts: 1, MaximumEventAgeInSeconds: 3600,
      DestinationConfig: { OnSuccess: { Destination: fnArn('sink') } },
    }));
    assert.equal(put.FunctionArn, fnArn('cfg', '$LATEST'));
    assert.equal(put.MaximumRetryAttempts, 1);
    assert.equal(put.MaximumEventAgeInSeconds, 3600);
    assert.deepEqual(put.DestinationConfig, { OnSuccess: { Destination: fnArn('sink') }, OnFailure: {} });
    assert.ok(put.LastModified instanceof Date && Math.abs(put.LastModified.getTime() - started) < 60_000, String(put.LastModified));

    const got = await s.client.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: '$LATEST' }));
    assert.equal(got.FunctionArn, put.FunctionArn);
    assert.deepEqual(got.DestinationConfig, put.DestinationConfig);

    // Update changes only what it names; Put replaces everything.
    const upd = await s.client.send(new UpdateFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', MaximumRetryAttempts: 0 }));
    assert.equal(upd.MaximumRetryAttempts, 0);
    assert.equal(upd.MaximumEventAgeInSeconds, 3600);
    assert.equal(upd.DestinationConfig?.OnSuccess?.Destination, fnArn('sink'));
    const replaced = await s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', MaximumRetryAttempts: 2 }));
    assert.equal(replaced.MaximumEventAgeInSeconds, undefined);
    assert.deepEqual(replaced.DestinationConfig, { OnSuccess: {}, OnFailure: {} });

    // Each qualifier has its own configuration; a qualified function name works like Qualifier.
    const alias = await s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'cfg:live', DestinationConfig: { OnFailure: { Destination: fnArn('sink', '$LATEST') } } }));
    assert.equal(alias.FunctionArn, fnArn('cfg', 'live'));
    await s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: fnArn('cfg'), Qualifier: '1', MaximumEventAgeInSeconds: 60 }));
    const all = await s.client.send(new ListFunctionEventInvokeConfigsCommand({ FunctionName: 'cfg' }));
    assert.deepEqual(all.FunctionEventInvokeConfigs?.map((c) => c.FunctionArn), [fnArn('cfg', '$LATEST'), fnArn('cfg', '1'), fnArn('cfg', 'live')]);
    assert.equal(all.NextMarker, undefined);
    const page1 = await s.client.send(new ListFunctionEventInvokeConfigsCommand({ FunctionName: 'cfg', MaxItems: 2 }));
    assert.equal(page1.FunctionEventInvokeConfigs?.length, 2);
    assert.ok(page1.NextMarker !== undefined);
    const page2 = await s.client.send(new ListFunctionEventInvokeConfigsCommand({ FunctionName: 'cfg', MaxItems: 2, Marker: page1.NextMarker }));
    assert.deepEqual(page2.FunctionEventInvokeConfigs?.map((c) => c.FunctionArn), [fnArn('cfg', 'live')]);

    await s.client.send(new DeleteFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: 'live' }));
    await rejects(s.client.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: 'live' })), 'ResourceNotFoundException');
    await rejects(s.client.send(new DeleteFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: 'live' })), 'ResourceNotFoundException');
    const left = await s.client.send(new ListFunctionEventInvokeConfigsCommand({ FunctionName: 'cfg' }));
    assert.equal(left.FunctionEventInvokeConfigs?.length, 2);

    // The configuration of an alias goes with the alias: a new alias of the same name starts without one.
    await s.client.send(new CreateAliasCommand({ FunctionName: 'cfg', Name: 'tmp', FunctionVersion: '1' }));
    await s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: 'tmp', MaximumRetryAttempts: 0 }));
    await s.client.send(new DeleteAliasCommand({ FunctionName: 'cfg', Name: 'tmp' }));
    await s.client.send(new CreateAliasCommand({ FunctionName: 'cfg', Name: 'tmp', FunctionVersion: '1' }));
    await rejects(s.client.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: 'tmp' })), 'ResourceNotFoundException');
  });

  test('EventInvokeConfig: validation errors as Lambda answers them', async () => {
    const put = (input: Record<string, unknown>): Promise<unknown> =>
      s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', ...input }));
    await rejects(put({ MaximumRetryAttempts: 3 }), 'ValidationException', /maximumRetryAttempts.*less than or equal to 2/);
    await rejects(put({ MaximumRetryAttempts: -1 }), 'ValidationException', /greater than or equal to 0/);
    await rejects(put({ MaximumEventAgeInSeconds: 59 }), 'ValidationException', /maximumEventAgeInSeconds.*greater than or equal to 60/);
    await rejects(put({ MaximumEventAgeInSeconds: 21601 }), 'ValidationException', /less than or equal to 21600/);
    await rejects(put({ DestinationConfig: { OnSuccess: { Destination: 'not-an-arn' } } }), 'ValidationException', /destination/);
    await rejects(put({}), 'InvalidParameterValueException', /at least one/);
    await rejects(put({ DestinationConfig: { OnFailure: { Destination: 'arn:aws:sqs:us-east-1:000000000000:dlq' } } }), 'InvalidParameterValueException', /SQS/);
    await rejects(put({ DestinationConfig: { OnSuccess: { Destination: 'arn:aws:sns:us-east-1:000000000000:topic' } } }), 'InvalidParameterValueException', /SNS/);
    await rejects(put({ DestinationConfig: { OnSuccess: { Destination: 'arn:aws:events:us-east-1:000000000000:event-bus/default' } } }), 'InvalidParameterValueException', /EventBridge/);
    await rejects(put({ DestinationConfig: { OnSuccess: { Destination: fnArn('cfg') } } }), 'InvalidParameterValueException', /itself/);
    await rejects(put({ DestinationConfig: { OnSuccess: { Destination: 'arn:aws:lambda:us-east-1:111111111111:function:sink' } } }), 'InvalidParameterValueException', /account/);
    await rejects(put({ DestinationConfig: { OnSuccess: { Destination: 'arn:aws:lambda:us-east-1:000000000000:layer:x' } } }), 'InvalidParameterValueException', /invalid/);
    await rejects(s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'no-such-fn', MaximumRetryAttempts: 0 })), 'ResourceNotFoundException');
    await rejects(s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: 'nope', MaximumRetryAttempts: 0 })), 'ResourceNotFoundException');
    await rejects(s.client.send(new UpdateFunctionEventInvokeConfigCommand({ FunctionName: 'cfg', Qualifier: '1', MaximumRetryAttempts: 9 })), 'ValidationException');
    await rejects(s.client.send(new ListFunctionEventInvokeConfigsCommand({ FunctionName: 'cfg', MaxItems: 51 })), 'InvalidParameterValueException');
    await createFunction(s.client, 'no-config', 'exports.handler = async () => 1;');
    await rejects(s.client.send(new UpdateFunctionEventInvokeConfigCommand({ FunctionName: 'no-config', MaximumRetryAttempts: 1 })), 'ResourceNotFoundException');
  });

  test('MaximumRetryAttempts 0, 1 and the default 2: the OnFailure record after the last attempt', async () => {
    for (const [name, retries] of [['fail0', 0], ['fail1', 1], ['fail2', undefined]] as const) {
      await createFunction(s.client, name, FAILING);
      await s.client.send(new PutFunctionEventInvokeConfigCommand({
        FunctionName: name, ...(retries === undefined ? {} : { MaximumRetryAttempts: retries }),
        DestinationConfig: { OnFailure: { Destination: fnArn('sink') } },
      }));
    }
    const ids = {
      fail0: await invokeEvent(s.client, 'fail0', { n: 0 }),
      fail1: await invokeEvent(s.client, 'fail1', { n: 1 }),
      fail2: await invokeEvent(s.client, 'fail2', { n: 2, nested: { ok: true } }),
    };
    for (const [name, invokes, payload] of [['fail0', 1, { n: 0 }], ['fail1', 2, { n: 1 }], ['fail2', 3, { n: 2, nested: { ok: true } }]] as const) {
      const id = ids[name];
      const rec = await recordFor(s.url, 'sink', 'RECORD', id);
      assert.deepEqual(Object.keys(rec).sort(), ['requestContext', 'requestPayload', 'responseContext', 'responsePayload', 'timestamp', 'version']);
      assert.equal(rec.version, '1.0');
      assert.equal(new Date(rec.timestamp).toISOString(), rec.timestamp);
      assert.deepEqual(rec.requestContext, { requestId: id, functionArn: fnArn(name, '$LATEST'), condition: 'RetriesExhausted', approximateInvokeCount: invokes });
      assert.deepEqual(rec.requestPayload, payload);
      assert.deepEqual(rec.responseContext, { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' });
      const err = rec.responsePayload as { errorType: string; errorMessage: string; trace: unknown };
      assert.equal(err.errorType, 'Error');
      assert.equal(err.errorMessage, 'asked to fail');
      assert.ok(Array.isArray(err.trace));

      // Every attempt is in the log under the same request id, numbered.
      const lines = (await logLines(s.url, name)).filter((l) => l.requestId === id);
      const starts = lines.filter((l) => l.message.startsWith('START RequestId: '));
      assert.deepEqual(starts.map((l) => l.attempt), Array.from({ length: invokes }, (_, i) => i + 1));
      assert.equal(lines.filter((l) => l.message.includes('attempt for')).length, invokes);
      assert.ok(lines.every((l) => typeof l.attempt === 'number'), 'every line of an attempt carries its number');
    }
    assert.equal((await recorded(s.url, 'sink', 'RECORD')).filter((r) => Object.values(ids).includes((r.requestContext as { requestId: string }).requestId)).length, 3, 'one record per event');

    // thaw logs --json shows the attempts too.
    const out = await runThaw(['logs', 'fail2', '--json', '--since', '1d', '--limit', '1000'], cliEnv(s.url));
    assert.equal(out.code, 0, out.stderr);
    const json = out.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { requestId: string | null; message: string; attempt?: number });
    const reports = json.filter((l) => l.requestId === ids.fail2 && l.message.startsWith('REPORT RequestId: '));
    assert.deepEqual(reports.map((l) => l.attempt), [1, 2, 3]);
  });

  test('OnSuccess after a retry, configured on an alias: the Success record', async () => {
    await createFunction(s.client, 'flaky', FLAKY);
    await s.client.send(new PublishVersionCommand({ FunctionName: 'flaky' }));
    await s.client.send(new CreateAliasCommand({ FunctionName: 'flaky', Name: 'live', FunctionVersion: '1' }));
    await s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'flaky', Qualifier: 'live', DestinationConfig: { OnSuccess: { Destination: fnArn('sink') } } }));
    const id = await invokeEvent(s.client, 'flaky', { key: 'a' }, 'live');
    const rec = await recordFor(s.url, 'sink', 'RECORD', id);
    assert.deepEqual(rec.requestContext, { requestId: id, functionArn: fnArn('flaky', 'live'), condition: 'Success', approximateInvokeCount: 2 });
    assert.deepEqual(rec.requestPayload, { key: 'a' });
    assert.deepEqual(rec.responseContext, { statusCode: 200, executedVersion: '1' });
    assert.deepEqual(rec.responsePayload, { ok: 'a', n: 2 });

    // Unqualified, the alias's configuration does not apply, Lambda's defaults do: a retry and no record.
    const plain = await invokeEvent(s.client, 'flaky', { key: 'b' });
    const attempts = await waitFor('the second attempt of the unqualified event', 30_000, async () => {
      const reports = (await logLines(s.url, 'flaky')).filter((l) => l.requestId === plain && l.message.startsWith('REPORT '));
      return reports.length === 2 ? reports : undefined;
    });
    assert.deepEqual(attempts.map((l) => [l.attempt, l.version]), [[1, '$LATEST'], [2, '$LATEST']]);
  });

  test('DeadLetterConfig: accepted, returned, and given the event when retries are exhausted, besides OnFailure', async () => {
    await createFunction(s.client, 'dlq', recorder('DEADLETTER'));
    await createFunction(s.client, 'dlq-source', FAILING, { DeadLetterConfig: { TargetArn: fnArn('dlq') } });
    const cfg = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'dlq-source' }));
    assert.deepEqual(cfg.DeadLetterConfig, { TargetArn: fnArn('dlq') });
    await s.client.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'dlq-source', MaximumRetryAttempts: 0, DestinationConfig: { OnFailure: { Destination: fnArn('sink') } } }));

    const id = await invokeEvent(s.client, 'dlq-source', { order: 42 });
    const rec = await recordFor(s.url, 'sink', 'RECORD', id);
    assert.equal(rec.requestContext.condition, 'RetriesExhausted');
    const letters = await waitFor('the dead letter', 30_000, async () => {
      const got = await recorded(s.url, 'dlq', 'DEADLETTER');
      return got.length > 0 ? got : undefined;
    });
    assert.deepEqual(letters, [{ order: 42 }], 'the dead-letter target gets the original event');

    await rejects(s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'dlq-source', DeadLetterConfig: { TargetArn: 'arn:aws:sqs:us-east-1:000000000000:q' } })), 'InvalidParameterValueException', /SQS/);
    await rejects(s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'dlq-source', DeadLetterConfig: { TargetArn: 'nonsense' } })), 'ValidationException');
    const cleared = await s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'dlq-source', DeadLetterConfig: { TargetArn: '' } }));
    assert.equal(cleared.DeadLetterConfig, undefined);
    const kept = await s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'dlq-source', DeadLetterConfig: { TargetArn: fnArn('dlq') } }));
    assert.deepEqual(kept.DeadLetterConfig, { TargetArn: fnArn('dlq') });
    const other = await s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'dlq-source', Description: 'still has a DLQ' }));
    assert.deepEqual(other.DeadLetterConfig, { TargetArn: fnArn('dlq') });
  });
});
