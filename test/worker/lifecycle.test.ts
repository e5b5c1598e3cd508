import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand, LambdaClient, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS, ROLE, decode, signedHeaders, zipFiles } from '../helpers/server.js';

/** Lifecycle limits on a server configured with short keep-alive and init timeout. */
let thaw: Thaw;
let client: LambdaClient;

before(async () => {
  thaw = await startThaw({ port: 0, dataDir: mkdtempSync(join(tmpdir(), 'thaw-lifecycle-')), credentials: CREDS, keepAliveMs: 1000, initTimeoutMs: 1500 });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
});
after(async () => {
  client.destroy();
  await thaw.close();
});

const create = async (name: string, code: string, extra: Record<string, unknown> = {}): Promise<void> => {
  await client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles({ 'index.js': code }) }, ...extra }));
};
const invoke = (name: string, payload: unknown = {}): Promise<InvokeCommandOutput> =>
  client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail' }));
const cold = (r: InvokeCommandOutput): boolean => /Init Duration/.test(Buffer.from(r.LogResult ?? '', 'base64').toString());

async function thawApi(method: string, path: string): Promise<unknown> {
  const url = new URL(path, thaw.url);
  const res = await fetch(url, { method, headers: await signedHeaders(url, method) });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

test('idle environments are reaped after the keep-alive; the next invoke is cold', async () => {
  await create('keep', 'exports.handler = async () => "k";');
  assert.ok(cold(await invoke('keep')));
  assert.ok(!cold(await invoke('keep')));
  await new Promise((r) => setTimeout(r, 2500));
  assert.ok(cold(await invoke('keep')), 'environment was reaped after 1 s idle');
});

test('Init longer than the init timeout fails with Sandbox.Timedout; the function works once Init is fast', async () => {
  await create('slowinit', 'const end = Date.now() + (process.env.SLOW ? 5000 : 0); while (Date.now() < end) {} exports.handler = async () => "ready";', { Environment: { Variables: { SLOW: '1' } } });
  const r = await invoke('slowinit');
  assert.equal(r.FunctionError, 'Unhandled');
  assert.equal((decode(r.Payload) as { errorType: string }).errorType, 'Sandbox.Timedout');
});

test('drain: Shutdown sends SIGTERM, the runtime may clean up; a runtime ignoring it is killed', async () => {
  await create('graceful', 'process.on("SIGTERM", () => { console.log("graceful shutdown"); process.exit(0); }); exports.handler = async () => "g";');
  await create('stubborn', 'process.on("SIGTERM", () => { console.log("ignoring SIGTERM"); }); exports.handler = async () => "s";');
  await invoke('graceful');
  await invoke('stubborn');
  assert.deepEqual(await thawApi('POST', '/thaw/v1/functions/graceful/drain'), { FunctionName: 'graceful', Stopped: 1 });
  const t0 = Date.now();
  assert.deepEqual(await thawApi('POST', '/thaw/v1/functions/stubborn/drain'), { FunctionName: 'stubborn', Stopped: 1 });
  assert.ok(Date.now() - t0 >= 1900, `${Date.now() - t0} ms: ` + 'a runtime that ignores SIGTERM is killed after the 2 s grace period');
  const logs = (await thawApi('GET', '/thaw/v1/functions/graceful/logs')) as { events: { message: string }[] };
  assert.ok(logs.events.some((e) => e.message.includes('graceful shutdown')), JSON.stringify(logs.events.map((e) => e.message)));
  const slogs = (await thawApi('GET', '/thaw/v1/functions/stubborn/logs')) as { events: { message: string }[] };
  assert.ok(slogs.events.some((e) => e.message.includes('ignoring SIGTERM')));
  assert.ok(cold(await invoke('graceful')), 'drain forces the next invoke to be cold');
});

test('a response over 6 MB fails with Function.ResponseSizeTooLarge', async () => {
  await create('big', 'exports.handler = async (e) => "x".repeat(e.n);', { MemorySize: 512 });
  const r = await invoke('big', { n: 7 * 1024 * 1024 });
  assert.equal(r.FunctionError, 'Unhandled');
  assert.equal((decode(r.Payload) as { errorType: string }).errorType, 'Function.ResponseSizeTooLarge');
  const ok = await invoke('big', { n: 10 });
  assert.equal(decode(ok.Payload), 'xxxxxxxxxx');
});

test('drain during an invocation: it completes, then its environment stops, so the next invoke is cold', async () => {
  await create('busy', 'exports.handler = async () => { await new Promise((r) => setTimeout(r, 800)); return "done"; };');
  assert.ok(cold(await invoke('busy')));
  const running = invoke('busy');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await thawApi('POST', '/thaw/v1/functions/busy/drain'), { FunctionName: 'busy', Stopped: 1 });
  const r = await running;
  assert.equal(decode(r.Payload), 'done');
  assert.ok(!cold(r));
  assert.ok(cold(await invoke('busy')), 'the drained environment was not reused');
});
