import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import {
  CreateFunctionCommand, DeleteFunctionCommand, DeleteFunctionConcurrencyCommand, GetAccountSettingsCommand, GetFunctionCommand,
  GetFunctionConcurrencyCommand, InvokeCommand, LambdaClient, PutFunctionConcurrencyCommand,
} from '@aws-sdk/client-lambda';
import { CREDS, ROLE, decode, startServer, zipFiles, type RunningServer, type SdkError, rejectsWith } from '../helpers/server.js';

const SLEEPY = 'exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms ?? 0)); return "done"; };';

const rejects = rejectsWith;

/** Invoke `n` times at once; the outcomes by kind: 'ok', or the throttle Reason. */
async function burst(client: LambdaClient, fn: string, n: number, ms: number): Promise<Map<string, number>> {
  const settled = await Promise.allSettled(Array.from({ length: n }, () => client.send(new InvokeCommand({ FunctionName: fn, Payload: Buffer.from(JSON.stringify({ ms })) }))));
  const counts = new Map<string, number>();
  for (const s of settled) {
    let kind: string;
    if (s.status === 'fulfilled') {
      assert.equal(s.value.FunctionError, undefined);
      assert.equal(decode(s.value.Payload), 'done');
      kind = 'ok';
    } else {
      const e = s.reason as SdkError;
      assert.equal(e.name, 'TooManyRequestsException', `unexpected failure: ${e.name}: ${e.message}`);
      assert.equal(e.$metadata?.httpStatusCode, 429);
      assert.equal(e.retryAfterSeconds, '1');
      kind = e.Reason ?? 'no Reason';
    }
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

describe('reserved and account concurrency (account limit 20)', () => {
  let s: RunningServer;
  let client: LambdaClient;
  let zip: Buffer;

  before(async () => {
    s = await startServer({ args: ['--account-concurrency', '20', '--max-environments', '24'] });
    client = new LambdaClient({ endpoint: s.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1, requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 200 }) } });
    zip = await zipFiles({ 'index.js': SLEEPY });
    for (const name of ['limited', 'open', 'big']) {
      await client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip }, Timeout: 10 }));
    }
  });
  after(async () => {
    client.destroy();
    await s.stop();
  });

  test('GetAccountSettings reports the limit; reservations come out of the unreserved pool', async () => {
    const a = await client.send(new GetAccountSettingsCommand({}));
    assert.equal(a.AccountLimit?.ConcurrentExecutions, 20);
    assert.equal(a.AccountLimit?.UnreservedConcurrentExecutions, 20);

    const put = await client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'limited', ReservedConcurrentExecutions: 2 }));
    assert.equal(put.ReservedConcurrentExecutions, 2);
    assert.equal((await client.send(new GetFunctionConcurrencyCommand({ FunctionName: 'limited' }))).ReservedConcurrentExecutions, 2);
    assert.equal((await client.send(new GetFunctionCommand({ FunctionName: 'limited' }))).Concurrency?.ReservedConcurrentExecutions, 2);
    assert.equal((await client.send(new GetFunctionCommand({ FunctionName: 'open' }))).Concurrency, undefined);
    assert.equal((await client.send(new GetFunctionConcurrencyCommand({ FunctionName: 'open' }))).ReservedConcurrentExecutions, undefined);
    assert.equal((await client.send(new GetAccountSettingsCommand({}))).AccountLimit?.UnreservedConcurrentExecutions, 18);
  });

  test('validation: the unreserved floor (a tenth of the limit: 2), negative values, unknown functions, qualifiers', async () => {
    await rejects(client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'big', ReservedConcurrentExecutions: 17 })), 'InvalidParameterValueException', (e) => {
      assert.equal(e.$metadata?.httpStatusCode, 400);
      assert.equal(e.message, "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [2].");
    });
    await rejects(client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'big', ReservedConcurrentExecutions: -1 })), 'ValidationException');
    await rejects(client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'nope', ReservedConcurrentExecutions: 1 })), 'ResourceNotFoundException');
    await rejects(client.send(new GetFunctionConcurrencyCommand({ FunctionName: 'nope' })), 'ResourceNotFoundException');
    await rejects(client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'big:1', ReservedConcurrentExecutions: 1 })), 'InvalidParameterValueException');
    // Nothing was stored by the refused requests.
    assert.equal((await client.send(new GetAccountSettingsCommand({}))).AccountLimit?.UnreservedConcurrentExecutions, 18);
  });

  test('a function over its reservation is throttled with ReservedFunctionConcurrentInvocationLimitExceeded', async () => {
    const counts = await burst(client, 'limited', 5, 1500);
    assert.deepEqual(Object.fromEntries(counts), { ok: 2, ReservedFunctionConcurrentInvocationLimitExceeded: 3 });
    // The slots are free again once those invocations are over.
    assert.deepEqual(Object.fromEntries(await burst(client, 'limited', 2, 0)), { ok: 2 });
  });

  test('reserved concurrency 0 throttles every invocation; DeleteFunctionConcurrency lifts it', async () => {
    await client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'limited', ReservedConcurrentExecutions: 0 }));
    await rejects(client.send(new InvokeCommand({ FunctionName: 'limited', Payload: Buffer.from('{}') })), 'TooManyRequestsException', (e) => {
      assert.equal(e.Reason, 'ReservedFunctionConcurrentInvocationLimitExceeded');
      assert.equal(e.$metadata?.httpStatusCode, 429);
    });
    await client.send(new DeleteFunctionConcurrencyCommand({ FunctionName: 'limited' }));
    assert.equal((await client.send(new GetFunctionConcurrencyCommand({ FunctionName: 'limited' }))).ReservedConcurrentExecutions, undefined);
    assert.equal(decode((await client.send(new InvokeCommand({ FunctionName: 'limited', Payload: Buffer.from('{}') }))).Payload), 'done');
    assert.equal((await client.send(new GetAccountSettingsCommand({}))).AccountLimit?.UnreservedConcurrentExecutions, 20);
  });

  test('functions without a reservation share the unreserved pool: ConcurrentInvocationLimitExceeded beyond it', async () => {
    // 20 - 16 reserved = 4 unreserved, shared by "open" and "limited".
    await client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'big', ReservedConcurrentExecutions: 16 }));
    assert.equal((await client.send(new GetAccountSettingsCommand({}))).AccountLimit?.UnreservedConcurrentExecutions, 4);
    const [open, limited] = await Promise.all([burst(client, 'open', 4, 1500), burst(client, 'limited', 3, 1500)]);
    assert.equal((open.get('ok') ?? 0) + (limited.get('ok') ?? 0), 4);
    assert.equal((open.get('ConcurrentInvocationLimitExceeded') ?? 0) + (limited.get('ConcurrentInvocationLimitExceeded') ?? 0), 3);
    // The reserved function keeps its 16 meanwhile.
    assert.deepEqual(Object.fromEntries(await burst(client, 'big', 3, 0)), { ok: 3 });
  });

  test('a deleted function takes its reservation with it', async () => {
    await client.send(new DeleteFunctionCommand({ FunctionName: 'big' }));
    assert.equal((await client.send(new GetAccountSettingsCommand({}))).AccountLimit?.UnreservedConcurrentExecutions, 20);
    await client.send(new CreateFunctionCommand({ FunctionName: 'big', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip } }));
    assert.equal((await client.send(new GetFunctionConcurrencyCommand({ FunctionName: 'big' }))).ReservedConcurrentExecutions, undefined);
  });
});
