import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateAliasCommand, CreateFunctionCommand, GetFunctionConfigurationCommand, DeleteProvisionedConcurrencyConfigCommand, GetProvisionedConcurrencyConfigCommand,
  InvokeCommand, LambdaClient, ListProvisionedConcurrencyConfigsCommand, PublishVersionCommand, PutFunctionConcurrencyCommand,
  DeleteFunctionConcurrencyCommand, PutProvisionedConcurrencyConfigCommand, UpdateFunctionCodeCommand,
  type GetProvisionedConcurrencyConfigCommandOutput,
} from '@aws-sdk/client-lambda';
import { ROLE, decode, startServer, zipFiles, type RunningServer, rejectsWith } from '../helpers/server.js';

const HANDLER = `
const initType = process.env.AWS_LAMBDA_INITIALIZATION_TYPE;
const envId = require('crypto').randomUUID();
exports.handler = async (e) => {
  if (e.crash) process.exit(3);
  await new Promise((r) => setTimeout(r, e.ms ?? 0));
  return { initType, envId, tag: 'v1' };
};`;

const rejects = rejectsWith;

async function until(client: LambdaClient, fn: string, qualifier: string, want: (c: GetProvisionedConcurrencyConfigCommandOutput) => boolean, ms = 60_000): Promise<GetProvisionedConcurrencyConfigCommandOutput> {
  const end = Date.now() + ms;
  let last: GetProvisionedConcurrencyConfigCommandOutput | undefined;
  while (Date.now() < end) {
    last = await client.send(new GetProvisionedConcurrencyConfigCommand({ FunctionName: fn, Qualifier: qualifier }));
    if (want(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`provisioned concurrency of ${fn}:${qualifier} did not get there: ${JSON.stringify(last)}`);
}

interface Served { initType: string; envId: string; report: string }

async function invoke(client: LambdaClient, fn: string, payload: object = {}): Promise<Served> {
  const r = await client.send(new InvokeCommand({ FunctionName: fn, Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail' }));
  assert.equal(r.FunctionError, undefined, Buffer.from(r.Payload ?? new Uint8Array()).toString());
  const log = Buffer.from(r.LogResult ?? '', 'base64').toString();
  const report = log.split('\n').find((l) => l.startsWith('REPORT ')) ?? '';
  const body = decode(r.Payload) as { initType: string; envId: string };
  return { initType: body.initType, envId: body.envId, report };
}

describe('provisioned concurrency', () => {
  let s: RunningServer;
  let zip: Buffer;

  before(async () => {
    s = await startServer({ args: ['--account-concurrency', '20'] });
    zip = await zipFiles({ 'index.js': HANDLER });
    await s.client.send(new CreateFunctionCommand({ FunctionName: 'warm', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip }, Timeout: 10 }));
    await s.client.send(new PublishVersionCommand({ FunctionName: 'warm' }));
    await s.client.send(new CreateAliasCommand({ FunctionName: 'warm', Name: 'live', FunctionVersion: '1' }));
  });
  after(async () => {
    await s.stop();
  });

  test('validation: $LATEST, values below 1, unknown versions and aliases, missing configurations', async () => {
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '$LATEST', ProvisionedConcurrentExecutions: 1 })), 'InvalidParameterValueException', (e) => {
      assert.equal(e.message, 'Provisioned Concurrency Configs cannot be applied to unpublished function versions.');
      assert.equal(e.$metadata?.httpStatusCode, 400);
    });
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '1', ProvisionedConcurrentExecutions: 0 })), 'ValidationException');
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '9', ProvisionedConcurrentExecutions: 1 })), 'ResourceNotFoundException');
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: 'nope', ProvisionedConcurrentExecutions: 1 })), 'ResourceNotFoundException');
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'ghost', Qualifier: '1', ProvisionedConcurrentExecutions: 1 })), 'ResourceNotFoundException');
    // More than the unreserved pool can give (20 - floor of 2).
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '1', ProvisionedConcurrentExecutions: 19 })), 'InvalidParameterValueException', (e) => {
      assert.equal(e.message, "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [2].");
    });
    await rejects(s.client.send(new GetProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '1' })), 'ProvisionedConcurrencyConfigNotFoundException', (e) => {
      assert.equal(e.$metadata?.httpStatusCode, 404);
    });
    await rejects(s.client.send(new DeleteProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '1' })), 'ProvisionedConcurrencyConfigNotFoundException');
  });

  test('IN_PROGRESS then READY; the first invoke is served without a cold start', async () => {
    const put = await s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: 'live', ProvisionedConcurrentExecutions: 2 }));
    assert.equal(put.$metadata.httpStatusCode, 202);
    assert.equal(put.Status, 'IN_PROGRESS');
    assert.equal(put.RequestedProvisionedConcurrentExecutions, 2);
    assert.equal(put.AllocatedProvisionedConcurrentExecutions, 0);
    assert.ok(put.LastModified);

    const ready = await until(s.client, 'warm', 'live', (c) => c.Status === 'READY');
    assert.equal(ready.AllocatedProvisionedConcurrentExecutions, 2);
    assert.equal(ready.AvailableProvisionedConcurrentExecutions, 2);
    assert.equal(ready.RequestedProvisionedConcurrentExecutions, 2);
    assert.equal(ready.StatusReason, undefined);

    const first = await invoke(s.client, 'warm:live');
    assert.equal(first.initType, 'provisioned-concurrency');
    assert.doesNotMatch(first.report, /Init Duration/);
    assert.match(first.report, /\tStart Path: provisioned-concurrency\t/);

    const list = await s.client.send(new ListProvisionedConcurrencyConfigsCommand({ FunctionName: 'warm' }));
    assert.equal(list.ProvisionedConcurrencyConfigs?.length, 1);
    assert.equal(list.ProvisionedConcurrencyConfigs?.[0]?.FunctionArn, 'arn:aws:lambda:us-east-1:000000000000:function:warm:live');
    assert.equal(list.ProvisionedConcurrencyConfigs?.[0]?.Status, 'READY');
  });

  test('provisioned environments are used first; overflow beyond them runs on demand', async () => {
    const served = await Promise.all([1, 2, 3].map(() => invoke(s.client, 'warm:live', { ms: 1500 })));
    const provisioned = served.filter((x) => x.initType === 'provisioned-concurrency');
    const onDemand = served.filter((x) => x.initType === 'on-demand');
    assert.equal(provisioned.length, 2);
    assert.equal(onDemand.length, 1);
    for (const p of provisioned) {
      assert.doesNotMatch(p.report, /Init Duration/);
      assert.match(p.report, /Start Path: provisioned-concurrency/);
    }
    assert.match(onDemand[0]?.report ?? '', /Init Duration: [\d.]+ ms/);
    assert.doesNotMatch(onDemand[0]?.report ?? '', /provisioned-concurrency/);
    // Invoking the version itself reaches the same provisioned environments.
    assert.equal((await invoke(s.client, 'warm:1')).initType, 'provisioned-concurrency');
  });

  test('a provisioned environment that dies is re-created', async () => {
    const pair = async (): Promise<Set<string>> => {
      const ids = new Set<string>();
      for (const x of await Promise.all([1, 2].map(() => invoke(s.client, 'warm:live', { ms: 500 })))) {
        assert.equal(x.initType, 'provisioned-concurrency');
        assert.doesNotMatch(x.report, /Init Duration/);
        ids.add(x.envId);
      }
      assert.equal(ids.size, 2);
      return ids;
    };
    const before = await pair();
    const crash = await s.client.send(new InvokeCommand({ FunctionName: 'warm:live', Payload: Buffer.from('{"crash":true}') }));
    assert.equal(crash.FunctionError, 'Unhandled');
    const again = await until(s.client, 'warm', 'live', (c) => c.Status === 'READY' && c.AllocatedProvisionedConcurrentExecutions === 2);
    assert.equal(again.AvailableProvisionedConcurrentExecutions, 2);
    // Two provisioned environments again: the survivor and a new one.
    const after = await pair();
    assert.equal([...after].filter((id) => before.has(id)).length, 1);
  });

  test('reserved concurrency must cover provisioned concurrency, both ways', async () => {
    await rejects(s.client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'warm', ReservedConcurrentExecutions: 1 })), 'InvalidParameterValueException');
    await s.client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'warm', ReservedConcurrentExecutions: 3 }));
    await s.client.send(new UpdateFunctionCodeCommand({ FunctionName: 'warm', ZipFile: await zipFiles({ 'index.js': HANDLER.replace("tag: 'v1'", "tag: 'v2'") }) }));
    const v2 = await s.client.send(new PublishVersionCommand({ FunctionName: 'warm' }));
    assert.equal(v2.Version, '2');
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '2', ProvisionedConcurrentExecutions: 2 })), 'InvalidParameterValueException', (e) => {
      assert.equal(e.message, 'Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function');
    });
    // A configuration on the alias's version while the alias has one: Lambda's conflict.
    await rejects(s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: '1', ProvisionedConcurrentExecutions: 1 })), 'ResourceConflictException');
    await s.client.send(new DeleteFunctionConcurrencyCommand({ FunctionName: 'warm' }));
  });

  test('Init failure ends in FAILED with a StatusReason', async () => {
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'broken', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Publish: true,
      Code: { ZipFile: await zipFiles({ 'index.js': 'throw new Error("no config");\nexports.handler = async () => 1;' }) },
    }));
    const put = await s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'broken', Qualifier: '1', ProvisionedConcurrentExecutions: 1 }));
    assert.equal(put.Status, 'IN_PROGRESS');
    const failed = await until(s.client, 'broken', '1', (c) => c.Status !== 'IN_PROGRESS');
    assert.equal(failed.Status, 'FAILED');
    assert.equal(failed.StatusReason, 'FUNCTION_ERROR_INIT_FAILURE');
    assert.equal(failed.AllocatedProvisionedConcurrentExecutions, 0);
    await s.client.send(new DeleteProvisionedConcurrencyConfigCommand({ FunctionName: 'broken', Qualifier: '1' }));
  });

  test('a SnapStart version: provisioned environments are restored from its snapshot, not initialised again', async () => {
    const code = `
const initAt = Date.now();
let restored = false;
globalThis.thaw?.snapstart.registerAfterRestore(() => { restored = true; });
exports.handler = async () => ({ initAt, restored, initType: process.env.AWS_LAMBDA_INITIALIZATION_TYPE });`;
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'snappy', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', SnapStart: { ApplyOn: 'PublishedVersions' },
      Code: { ZipFile: await zipFiles({ 'index.js': code }) },
    }));
    await s.client.send(new PublishVersionCommand({ FunctionName: 'snappy' }));
    for (let i = 0; i < 600; i++) {
      const c = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'snappy', Qualifier: '1' }));
      if (c.State !== 'Pending') {
        assert.equal(c.State, 'Active', c.StateReason);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const putAt = Date.now();
    const put = await s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'snappy', Qualifier: '1', ProvisionedConcurrentExecutions: 1 }));
    assert.equal(put.Status, 'IN_PROGRESS');
    await until(s.client, 'snappy', '1', (c) => c.Status === 'READY', 120_000);
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'snappy', Qualifier: '1', LogType: 'Tail' }));
    const body = decode(r.Payload) as { initAt: number; restored: boolean; initType: string };
    assert.equal(body.restored, true);
    assert.ok(body.initAt < putAt, 'Init ran once, when the snapshot was made');
    assert.equal(body.initType, 'provisioned-concurrency');
    const report = Buffer.from(r.LogResult ?? '', 'base64').toString().split('\n').find((l) => l.startsWith('REPORT ')) ?? '';
    assert.doesNotMatch(report, /Init Duration|Restore Duration/);
    assert.match(report, /Start Path: provisioned-concurrency/);
    await s.client.send(new DeleteProvisionedConcurrencyConfigCommand({ FunctionName: 'snappy', Qualifier: '1' }));
  });

  test('configurations are allocated again after a restart; DeleteProvisionedConcurrencyConfig removes them', async () => {
    await s.stop();
    s = await startServer({ dataDir: s.dataDir, args: ['--account-concurrency', '20'] });
    const ready = await until(s.client, 'warm', 'live', (c) => c.Status === 'READY');
    assert.equal(ready.AllocatedProvisionedConcurrentExecutions, 2);
    const first = await invoke(s.client, 'warm:live');
    assert.equal(first.initType, 'provisioned-concurrency');
    assert.doesNotMatch(first.report, /Init Duration/);

    const del = await s.client.send(new DeleteProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: 'live' }));
    assert.equal(del.$metadata.httpStatusCode, 204);
    await rejects(s.client.send(new GetProvisionedConcurrencyConfigCommand({ FunctionName: 'warm', Qualifier: 'live' })), 'ProvisionedConcurrencyConfigNotFoundException');
    assert.deepEqual((await s.client.send(new ListProvisionedConcurrencyConfigsCommand({ FunctionName: 'warm' }))).ProvisionedConcurrencyConfigs, []);
    // Without a configuration, a new environment is an ordinary on-demand one.
    const served = await Promise.all([1, 2, 3].map(() => invoke(s.client, 'warm:live', { ms: 300 })));
    assert.ok(served.some((x) => x.initType === 'on-demand' && /Init Duration/.test(x.report)));
  });
});
