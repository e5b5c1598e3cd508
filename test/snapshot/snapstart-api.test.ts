import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateFunctionCommand, GetFunctionCommand, GetFunctionConfigurationCommand, InvokeCommand, LambdaClient, PublishVersionCommand,
  type InvokeCommandOutput,
} from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS, ROLE, decode, signedHeaders, zipFiles } from '../helpers/server.js';

/** SnapStart through the Lambda API: PublishVersion optimises, cold starts restore. */
let thaw: Thaw;
let client: LambdaClient;
let listener: Server;

before(async () => {
  thaw = await startThaw({ port: 0, dataDir: mkdtempSync(join(tmpdir(), 'thaw-snapstart-')), credentials: CREDS });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
  listener = createServer((s) => s.on('error', () => undefined));
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
});
after(async () => {
  client.destroy();
  listener.close();
  await thaw.close();
});

async function waitForState(name: string, qualifier: string): Promise<{ State?: string; StateReason?: string; StateReasonCode?: string }> {
  for (let i = 0; i < 600; i++) {
    const c = await client.send(new GetFunctionConfigurationCommand({ FunctionName: name, Qualifier: qualifier }));
    if (c.State !== 'Pending') return c;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('still Pending');
}

async function coldInvoke(name: string, qualifier: string): Promise<InvokeCommandOutput> {
  const url = new URL(`/thaw/v1/functions/${name}/drain?Qualifier=${qualifier}`, thaw.url);
  assert.equal((await fetch(url, { method: 'POST', headers: await signedHeaders(url, 'POST') })).status, 200);
  return client.send(new InvokeCommand({ FunctionName: name, Qualifier: qualifier, LogType: 'Tail', Payload: Buffer.from('{}') }));
}

const INIT_STATE = `
const crypto = require('crypto');
const table = []; for (let i = 0; i < 1000; i++) table.push(i * i);
const order = [];
globalThis.thaw?.snapstart.registerBeforeCheckpoint(() => order.push('before'));
globalThis.thaw?.snapstart.registerAfterRestore(() => order.push('after-1'));
globalThis.thaw?.snapstart.registerAfterRestore(() => order.push('after-2'));
exports.handler = async () => ({
  sum: table.reduce((a, b) => a + b, 0), order, type: process.env.AWS_LAMBDA_INITIALIZATION_TYPE,
  random: Math.random(), uuid: crypto.randomUUID(), bytes: crypto.randomBytes(8).toString('hex'),
});`;

test('PublishVersion with SnapStart: Pending → Active, cold starts restore with Init state, hooks in order, unique randomness', async () => {
  await client.send(new CreateFunctionCommand({
    FunctionName: 'snap', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', MemorySize: 512,
    SnapStart: { ApplyOn: 'PublishedVersions' }, Code: { ZipFile: await zipFiles({ 'index.js': INIT_STATE }) },
  }));
  const published = await client.send(new PublishVersionCommand({ FunctionName: 'snap' }));
  assert.equal(published.Version, '1');
  assert.equal(published.State, 'Pending');
  const done = await waitForState('snap', '1');
  assert.equal(done.State, 'Active', JSON.stringify(done));
  const g = await client.send(new GetFunctionCommand({ FunctionName: 'snap', Qualifier: '1' }));
  assert.deepEqual(g.Configuration?.SnapStart, { ApplyOn: 'PublishedVersions', OptimizationStatus: 'On' });

  const a = await coldInvoke('snap', '1');
  const b = await coldInvoke('snap', '1');
  const log = Buffer.from(a.LogResult ?? '', 'base64').toString();
  assert.match(log, /Restore Duration: [\d.]+ ms/);
  assert.match(log, /Start Path: restore/);
  assert.doesNotMatch(log, /Init Duration/);
  const pa = decode(a.Payload) as Record<string, unknown>;
  const pb = decode(b.Payload) as Record<string, unknown>;
  assert.equal(a.FunctionError, undefined, JSON.stringify(pa));
  assert.equal(pa.sum, 332833500, 'Init state is present after restore');
  assert.deepEqual(pa.order, ['before', 'after-1', 'after-2']);
  assert.equal(pa.type, 'snap-start');
  assert.notEqual(pa.random, pb.random);
  assert.notEqual(pa.uuid, pb.uuid);
  assert.notEqual(pa.bytes, pb.bytes);
  // $LATEST is not optimised: it starts as usual.
  const latest = await client.send(new InvokeCommand({ FunctionName: 'snap', LogType: 'Tail' }));
  assert.match(Buffer.from(latest.LogResult ?? '', 'base64').toString(), /Init Duration/);
});

const SLOW_INIT = `
const fs = require('fs');
const until = Date.now() + 300; while (Date.now() < until);
const table = []; for (let i = 0; i < 1000; i++) table.push(i * i);
exports.handler = async () => ({
  sum: table.reduce((a, b) => a + b, 0), cwd: process.cwd(), files: fs.readdirSync('.').sort(),
  data: fs.readFileSync('/var/task/data.txt', 'utf8'), type: process.env.AWS_LAMBDA_INITIALIZATION_TYPE,
  mine: process.env.MINE, random: Math.random(),
  // The last mount on a path is the one in effect (under it: the cell's empty directory).
  mounts: Object.entries(Object.fromEntries(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').map((l) => l.split(' '))
    .filter((f) => f[4] === '/var/task' || f[4] === '/var/snapshot').map((f) => [f[4], f[5].split(',')[0]]))).map(([m, o]) => m + ' ' + o).sort(),
});`;

test('cold starts restore into pre-built sandboxes (restore cells): code, variables and Init state as on a plain restore', async () => {
  await client.send(new CreateFunctionCommand({
    FunctionName: 'cells', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', MemorySize: 256,
    Environment: { Variables: { MINE: 'yes' } },
    SnapStart: { ApplyOn: 'PublishedVersions' }, Code: { ZipFile: await zipFiles({ 'index.js': SLOW_INIT, 'data.txt': 'from the package' }) },
  }));
  await client.send(new PublishVersionCommand({ FunctionName: 'cells' }));
  assert.equal((await waitForState('cells', '1')).State, 'Active');
  const seen: string[] = [];
  const randoms = new Set<unknown>();
  let cell: Record<string, unknown> | undefined;
  for (let i = 0; i < 20 && cell === undefined; i++) {
    const r = await coldInvoke('cells', '1');
    const log = Buffer.from(r.LogResult ?? '', 'base64').toString();
    const path = /Start Path: (\S+)/.exec(log)?.[1] ?? 'none';
    seen.push(path);
    const p = decode(r.Payload) as Record<string, unknown>;
    assert.equal(r.FunctionError, undefined, JSON.stringify(p));
    randoms.add(p.random);
    if (path === 'restore+cell') {
      assert.match(log, /Restore Duration: [\d.]+ ms/);
      cell = p;
    }
    await new Promise((res) => setTimeout(res, 150));
  }
  assert.ok(cell !== undefined, `no cold start used a restore cell: ${seen.join(', ')}`);
  assert.equal(cell.sum, 332833500, 'Init state is present after restore');
  assert.equal(cell.cwd, '/var/task');
  assert.deepEqual(cell.files, ['data.txt', 'index.js']);
  assert.equal(cell.data, 'from the package');
  assert.equal(cell.type, 'snap-start');
  assert.equal(cell.mine, 'yes');
  assert.deepEqual(cell.mounts, ['/var/snapshot ro', '/var/task ro'], 'code and snapshot are read-only in the cell');
  assert.equal(randoms.size, seen.length, 'every restored environment has its own randomness');
  // The path taken shows in the metrics as well as in the log.
  const url = new URL('/thaw/v1/metrics', thaw.url);
  const res = await fetch(url, { headers: await signedHeaders(url, 'GET') });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  const count = (path: string): number => seen.filter((p) => p === path).length;
  for (const path of new Set(seen)) {
    assert.match(text, new RegExp(`^thaw_cold_starts_total\\{function="cells",path="${path.replace('+', '\\+')}"\\} ${count(path)}$`, 'm'), text);
  }
  assert.match(text, /^thaw_start_duration_seconds_count\{path="restore\+cell"\} [1-9]\d*$/m);
  assert.match(text, new RegExp(`^thaw_invocations_total\\{function="cells",start="cold"\\} ${seen.length}$`, 'm'));
  assert.match(text, /^thaw_cells_ready\{kind="restore"\} \d+$/m);
});

test('a function that leaves a socket open during Init gets a Failed version with a clear reason', async () => {
  const port = (listener.address() as AddressInfo).port;
  await client.send(new CreateFunctionCommand({
    FunctionName: 'snap-socket', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', SnapStart: { ApplyOn: 'PublishedVersions' },
    // Inside the build sandbox there is no network but its own loopback: Init opens a server and a connection to it.
    Code: { ZipFile: await zipFiles({ 'index.js': `const net = require('net'); const srv = net.createServer(); srv.listen(${port}, '127.0.0.1', () => { net.connect(${port}, '127.0.0.1').on('error', () => {}); }); exports.handler = async () => 1;` }) },
  }));
  await client.send(new PublishVersionCommand({ FunctionName: 'snap-socket' }));
  const done = await waitForState('snap-socket', '1');
  assert.equal(done.State, 'Failed');
  assert.match(done.StateReason ?? '', /socket|connection/i);
  assert.equal(done.StateReasonCode, 'FunctionError');
  await assert.rejects(client.send(new InvokeCommand({ FunctionName: 'snap-socket', Qualifier: '1' })), (e: unknown) => (e as { name: string }).name === 'ResourceConflictException');
});
