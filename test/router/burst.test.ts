import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { CreateFunctionCommand, InvokeCommand, LambdaClient, PutFunctionConcurrencyCommand } from '@aws-sdk/client-lambda';
import { CREDS, ROLE, decode, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

/** Each environment names itself once, at Init, so that a test can count the environments that served. */
const HANDLER = `
const envId = require('crypto').randomUUID();
exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return { envId }; };`;

const DEADLINE_MS = 90_000;

interface Outcome { readonly ok: number; readonly throttled: Map<string, number>; readonly envs: Set<string>; readonly coldStarts: number; readonly elapsedMs: number }

/** `n` invocations at once of a function with no warm environment; every one must settle before the deadline. */
async function burst(client: LambdaClient, fn: string, n: number, ms: number): Promise<Outcome> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const all = Promise.allSettled(Array.from({ length: n }, () => client.send(new InvokeCommand({ FunctionName: fn, Payload: Buffer.from(JSON.stringify({ ms })), LogType: 'Tail' }))));
  const settled = await Promise.race([all, new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error(`a burst of ${n} did not settle within ${DEADLINE_MS} ms`)), DEADLINE_MS); })]);
  clearTimeout(timer);
  const out = { ok: 0, throttled: new Map<string, number>(), envs: new Set<string>(), coldStarts: 0, elapsedMs: Date.now() - started };
  for (const s of settled) {
    if (s.status === 'fulfilled') {
      assert.equal(s.value.FunctionError, undefined, Buffer.from(s.value.Payload ?? new Uint8Array()).toString());
      out.ok++;
      out.envs.add((decode(s.value.Payload) as { envId: string }).envId);
      if (/Init Duration: /.test(Buffer.from(s.value.LogResult ?? '', 'base64').toString())) out.coldStarts++;
    } else {
      const e = s.reason as { name?: string; message?: string; Reason?: string; $metadata?: { httpStatusCode?: number } };
      assert.equal(e.name, 'TooManyRequestsException', `unexpected failure: ${e.name}: ${e.message}`);
      assert.equal(e.$metadata?.httpStatusCode, 429);
      out.throttled.set(e.Reason ?? 'none', (out.throttled.get(e.Reason ?? 'none') ?? 0) + 1);
    }
  }
  return out;
}

function lambdaClient(url: string): LambdaClient {
  // Enough sockets that all 100 requests are in flight together, as from 100 callers.
  return new LambdaClient({ endpoint: url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1, requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 200 }) } });
}

async function createSleeper(client: LambdaClient, name: string, zip: Buffer): Promise<void> {
  await client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip }, Timeout: 30 }));
}

describe('a burst of 100 invocations on a worker capped at 12 environments (account limit 100)', () => {
  let s: RunningServer;
  let client: LambdaClient;

  before(async () => {
    s = await startServer({ args: ['--account-concurrency', '100', '--max-environments', '12'] });
    client = lambdaClient(s.url);
    const zip = await zipFiles({ 'index.js': HANDLER });
    await createSleeper(client, 'burst', zip);
    await createSleeper(client, 'capped', zip);
  });
  after(async () => {
    client.destroy();
    await s.stop();
  });

  test('all 100 complete: requests over the environment cap wait for an environment instead of failing', async () => {
    const r = await burst(client, 'burst', 100, 100);
    assert.equal(r.ok, 100);
    assert.equal(r.throttled.size, 0);
    assert.ok(r.envs.size <= 12, `${r.envs.size} environments on a worker capped at 12`);
    assert.equal(r.coldStarts, r.envs.size);
  });

  test('reserved concurrency 10: exactly 10 run, 90 are throttled with ReservedFunctionConcurrentInvocationLimitExceeded', async () => {
    await client.send(new PutFunctionConcurrencyCommand({ FunctionName: 'capped', ReservedConcurrentExecutions: 10 }));
    const r = await burst(client, 'capped', 100, 3000);
    assert.equal(r.ok, 10);
    assert.deepEqual(Object.fromEntries(r.throttled), { ReservedFunctionConcurrentInvocationLimitExceeded: 90 });
    assert.equal(r.envs.size, 10);
    assert.equal(r.coldStarts, 10);
  });
});

describe('a burst of 100 invocations against an account limit of 20', () => {
  let s: RunningServer;
  let client: LambdaClient;

  before(async () => {
    s = await startServer({ args: ['--account-concurrency', '20', '--max-environments', '32'] });
    client = lambdaClient(s.url);
    await createSleeper(client, 'wide', await zipFiles({ 'index.js': HANDLER }));
  });
  after(async () => {
    client.destroy();
    await s.stop();
  });

  test('exactly 20 run, 80 are throttled with ConcurrentInvocationLimitExceeded', async () => {
    const r = await burst(client, 'wide', 100, 3000);
    assert.equal(r.ok, 20);
    assert.deepEqual(Object.fromEntries(r.throttled), { ConcurrentInvocationLimitExceeded: 80 });
    assert.equal(r.envs.size, 20);
  });
});
