import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand, LambdaClient, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS, ROLE, decode, zipFiles } from '../helpers/server.js';

/**
 * The histogram keep-alive policy against real environments, on a short time scale: 200 ms bins over a 8 s range,
 * 4 idle times to learn a pattern, and a fallback keep-alive of 60 s that none of these tests waits for.
 */
let thaw: Thaw;
let client: LambdaClient;

before(async () => {
  thaw = await startThaw({
    port: 0,
    dataDir: mkdtempSync(join(tmpdir(), 'thaw-keepalive-')),
    credentials: CREDS,
    keepAliveMs: 60_000,
    keepAlivePolicy: 'histogram',
    keepAliveHistogram: { binMs: 200, bins: 40, minSamples: 4 },
    prewarmLeadMs: 700,
  });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
});
after(async () => {
  client.destroy();
  await thaw.close();
});

/** The handler answers with an id drawn at Init: a new id means a new environment. */
const HANDLER = 'const id = require("crypto").randomUUID(); exports.handler = async () => id;';
const create = async (name: string): Promise<void> => {
  await client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles({ 'index.js': HANDLER }) } }));
};
interface Served { env: string; cold: boolean }
const invoke = async (name: string): Promise<Served> => {
  const r: InvokeCommandOutput = await client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from('{}'), LogType: 'Tail' }));
  assert.equal(r.FunctionError, undefined);
  return { env: decode(r.Payload) as string, cold: /Init Duration/.test(Buffer.from(r.LogResult ?? '', 'base64').toString()) };
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('an idle environment is reaped at the end of the window its version\'s idle times give, not the fixed keep-alive', async () => {
  await create('learner');
  await create('newcomer');
  // Back-to-back invocations: every idle time falls in the first 200 ms bin, so the window is 220 ms.
  assert.ok((await invoke('learner')).cold);
  for (let i = 0; i < 6; i++) assert.ok(!(await invoke('learner')).cold);
  // A version with one invocation has no history: the fixed keep-alive (60 s) keeps it.
  assert.ok((await invoke('newcomer')).cold);
  await sleep(1200);
  assert.ok((await invoke('learner')).cold, 'reaped after its 220 ms window');
  assert.ok(!(await invoke('newcomer')).cold, 'kept by the fallback keep-alive');
});

test('a periodic version is unloaded after each invocation and pre-warmed before the next: served warm by a new environment', async () => {
  await create('periodic');
  // Every 1.25 s: idle times in the bin [1.2 s, 1.4 s). Once learned, the environment is stopped after each
  // invocation and a new one is started 0.7 s before 1.08 s (90% of the head) and kept until 1.54 s.
  const served: Served[] = [await invoke('periodic')];
  for (let i = 0; i < 9; i++) {
    await sleep(1250);
    served.push(await invoke('periodic'));
  }
  assert.ok(served[0]?.cold);
  // While learning (4 idle times) the fallback keeps the first environment.
  for (const s of served.slice(1, 5)) assert.deepEqual(s, { env: served[0]?.env, cold: false });
  const prewarmed = served.slice(5).filter((s, i) => s.env !== served[4 + i]?.env && !s.cold);
  assert.ok(prewarmed.length >= 3, `warm invocations by a pre-warmed environment: ${JSON.stringify(served)}`);
  assert.equal(served.filter((s) => s.cold).length, 1, JSON.stringify(served));
});
