import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS, ROLE, decode, zipFiles } from '../helpers/server.js';

/** With room for one environment, a second concurrent invocation is throttled exactly as Lambda does it. */
let thaw: Thaw;
let client: LambdaClient;

before(async () => {
  thaw = await startThaw({ port: 0, dataDir: mkdtempSync(join(tmpdir(), 'thaw-throttle-')), credentials: CREDS, maxEnvironments: 1 });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
});
after(async () => {
  client.destroy();
  await thaw.close();
});

test('TooManyRequestsException (429, Reason) when no environment can be placed; fine again afterwards', async () => {
  await client.send(new CreateFunctionCommand({
    FunctionName: 'sleepy', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler',
    Code: { ZipFile: await zipFiles({ 'index.js': 'exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return "done"; };' }) },
  }));
  await client.send(new InvokeCommand({ FunctionName: 'sleepy', Payload: Buffer.from('{"ms":0}') }));
  const slow = client.send(new InvokeCommand({ FunctionName: 'sleepy', Payload: Buffer.from('{"ms":1500}') }));
  await new Promise((r) => setTimeout(r, 300));
  await assert.rejects(client.send(new InvokeCommand({ FunctionName: 'sleepy', Payload: Buffer.from('{"ms":0}') })), (e: unknown) => {
    const err = e as { name: string; $metadata: { httpStatusCode: number }; Reason?: string };
    assert.equal(err.name, 'TooManyRequestsException');
    assert.equal(err.$metadata.httpStatusCode, 429);
    assert.equal(err.Reason, 'ConcurrentInvocationLimitExceeded');
    return true;
  });
  assert.equal(decode((await slow).Payload), 'done');
  assert.equal(decode((await client.send(new InvokeCommand({ FunctionName: 'sleepy', Payload: Buffer.from('{"ms":0}') }))).Payload), 'done');
});
