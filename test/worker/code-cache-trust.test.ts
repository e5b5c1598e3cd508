import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand, LambdaClient, PublishVersionCommand, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS, ROLE, decode, signedHeaders, zipFiles } from '../helpers/server.js';

/**
 * Code-cache poisoning (issue 10, finding 2), end to end on the namespaces driver: a function's handler crafts a
 * V8 code cache for its own `value.js` from a source of the same length with "EVIL" for "good" and uploads it
 * through its Runtime API. V8 would accept that cache for the real file, so any cold start that received it
 * would return "EVIL". Caches are now made only by a trusted step, keyed per version, and never taken from an
 * environment that serves invocations.
 */
const usable = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');
const skip = usable ? false : 'needs root and bubblewrap';
const dataDir = mkdtempSync(join(tmpdir(), 'thaw-cache-trust-'));
let thaw: Thaw;
let client: LambdaClient;

const FILES = {
  'value.js': 'module.exports = "good";\n',
  'index.js': `const value = require('./value');
const fs = require('fs');
const http = require('http');
const Module = require('module');
const vm = require('vm');

const SOCKET = '/var/run/thaw/runtime-api.sock';
const PATH = '/2018-06-01/runtime/thaw/code-cache';

/** The runtime's wire format: [u32 name length][name][u32 data length][data]. */
function crafted() {
  const file = '/var/task/value.js';
  const real = fs.readFileSync(file, 'utf8');
  const evil = real.replace('good', 'EVIL');
  const script = new vm.Script(Module.wrap(evil), { filename: file });
  script.runInThisContext();
  const data = script.createCachedData();
  const name = Buffer.from(file);
  const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  return { sameLength: evil.length === real.length, body: Buffer.concat([u32(name.length), name, u32(data.length), data]) };
}

/** POST to the code-cache endpoint; with declared set, claim that many bytes and send only the first 1 KiB. */
function post(body, declared) {
  return new Promise((resolve) => {
    const started = Date.now();
    const req = http.request({ socketPath: SOCKET, method: 'POST', path: PATH, headers: { 'Content-Length': String(declared ?? body.length) } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, errorType: JSON.parse(text || '{}').errorType, ms: Date.now() - started }));
      res.on('error', () => resolve({ status: res.statusCode, ms: Date.now() - started }));
    });
    req.on('error', (e) => resolve({ status: 0, error: String(e), ms: Date.now() - started }));
    // A server that waits for the declared body never answers: give up after 3 s.
    req.setTimeout(3000, () => { resolve({ status: 'no answer', ms: Date.now() - started }); req.destroy(); });
    if (declared === undefined) req.end(body);
    else req.write(body.subarray(0, 1024));
  });
}

/** With ATTACK_AT_INIT, Init uploads too, unless this is the trusted step that runs the version's own Init. */
const atInit = (async () => {
  if (process.env.ATTACK_AT_INIT !== '1') return undefined;
  const asked = await new Promise((resolve) => {
    http.get({ socketPath: SOCKET, path: PATH }, (res) => { res.resume(); resolve(res.headers['thaw-code-cache']); }).on('error', () => resolve('error'));
  });
  if (asked === 'produce') return undefined;
  return post(crafted().body);
})();

exports.handler = async (event) => {
  if (event.attack === 'init') return { value, atInit: await atInit };
  if (event.attack === 'upload') {
    const c = crafted();
    return { value, sameLength: c.sameLength, upload: await post(c.body) };
  }
  if (event.attack === 'huge') return { value, huge: await post(Buffer.alloc(1024, 7), 200 * 1024 * 1024) };
  return { value };
};
`,
};

interface Upload { value: string; sameLength: boolean; upload: { status: number; errorType?: string } }
interface Huge { value: string; huge: { status: number | string; ms: number } }

before(async () => {
  if (!usable) return;
  thaw = await startThaw({ port: 0, dataDir, credentials: CREDS, driver: 'namespaces' });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
});
after(async () => {
  if (!usable) return;
  client.destroy();
  await thaw.close();
});

const startPath = (r: InvokeCommandOutput): string | undefined => /Start Path: (\S+)/.exec(Buffer.from(r.LogResult ?? '', 'base64').toString())?.[1];

async function drain(name: string, qualifier?: string): Promise<void> {
  const url = new URL(`/thaw/v1/functions/${name}/drain${qualifier === undefined ? '' : `?Qualifier=${qualifier}`}`, thaw.url);
  const res = await fetch(url, { method: 'POST', headers: await signedHeaders(url, 'POST') });
  assert.equal(res.status, 200);
}

async function invoke(name: string, payload: unknown, qualifier?: string): Promise<{ out: unknown; path: string | undefined }> {
  const r = await client.send(new InvokeCommand({ FunctionName: name, ...(qualifier === undefined ? {} : { Qualifier: qualifier }), Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail' }));
  assert.equal(r.FunctionError, undefined, JSON.stringify(decode(r.Payload)));
  return { out: decode(r.Payload), path: startPath(r) };
}

/** The handler's upload is refused, and an oversized one at once, without the server reading or allocating it. */
async function attack(name: string, qualifier?: string): Promise<void> {
  const a = (await invoke(name, { attack: 'upload' }, qualifier)).out as Upload;
  assert.equal(a.value, 'good');
  assert.equal(a.sameLength, true);
  // Where an upload was taken (before this fix: 202), the next cold start ran the attacker's bytecode.
  await drain(name, qualifier);
  assert.deepEqual((await invoke(name, {}, qualifier)).out, { value: 'good' }, 'the cold start after the upload');
  assert.deepEqual(a.upload, { ...a.upload, status: 403, errorType: 'CodeCacheRefused' });
  const before = process.memoryUsage().arrayBuffers;
  const h = (await invoke(name, { attack: 'huge' }, qualifier)).out as Huge;
  assert.equal(h.huge.status, 403);
  // Generous bound: 200 MiB were declared; the server holds far less than that for it (it read 1 KiB at most).
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'the declared size was not allocated');
}

/** Cold starts (each after a drain) until one began with a code cache; every one of them must return "good". */
async function coldUntilCached(name: string, qualifier?: string): Promise<string> {
  for (let i = 0; i < 40; i++) {
    await drain(name, qualifier);
    const { out, path } = await invoke(name, {}, qualifier);
    assert.deepEqual(out, { value: 'good' }, `cold start ${i} (${path ?? '?'})`);
    if (path?.includes('code-cache') === true) return path;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('no cold start began with a code cache');
}

test('a handler that uploads a crafted code cache changes no later cold start (after drains, and once a cache exists)', { skip }, async () => {
  await client.send(new CreateFunctionCommand({ FunctionName: 'victim', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Timeout: 10, Code: { ZipFile: await zipFiles(FILES) } }));
  await attack('victim');
  // The trusted step has made the version's real cache: cold starts use it and still return "good".
  assert.match(await coldUntilCached('victim'), /code-cache/);
  // A warm environment of a version that has a cache tries again; so does a fresh one.
  await attack('victim');
  await drain('victim');
  await attack('victim');
  await coldUntilCached('victim');
});

test('a published version and a new function with identical code get caches of their own, never the attacker\'s', { skip }, async () => {
  const v = await client.send(new PublishVersionCommand({ FunctionName: 'victim' }));
  const version = v.Version as string;
  await attack('victim', version);
  await coldUntilCached('victim', version);

  await client.send(new CreateFunctionCommand({ FunctionName: 'twin', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Timeout: 10, Code: { ZipFile: await zipFiles(FILES) } }));
  await attack('twin');
  await coldUntilCached('twin');
});

test('after a restart, cold starts begin with the stored cache of their version and return "good"', { skip }, async () => {
  client.destroy();
  await thaw.close();
  thaw = await startThaw({ port: 0, dataDir, credentials: CREDS, driver: 'namespaces' });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
  for (const name of ['victim', 'twin']) {
    const { out, path } = await invoke(name, {});
    assert.deepEqual(out, { value: 'good' });
    assert.match(path ?? '', /code-cache/, `${name} started from its stored cache`);
  }
  await attack('victim');
  await coldUntilCached('victim');
});

test('an upload made during the Init of an environment that serves invocations is refused too', { skip }, async () => {
  await client.send(new CreateFunctionCommand({ FunctionName: 'early', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Timeout: 10, Environment: { Variables: { ATTACK_AT_INIT: '1' } }, Code: { ZipFile: await zipFiles(FILES) } }));
  let cached = false;
  for (let i = 0; i < 40 && !cached; i++) {
    await drain('early');
    const { out, path } = await invoke('early', { attack: 'init' });
    const r = out as { value: string; atInit: { status: number; errorType?: string } };
    assert.equal(r.value, 'good', `cold start ${i} (${path ?? '?'})`);
    assert.deepEqual(r.atInit, { ...r.atInit, status: 403, errorType: 'CodeCacheRefused' });
    cached = path?.includes('code-cache') === true;
    if (!cached) await new Promise((res) => setTimeout(res, 250));
  }
  assert.ok(cached, 'a cold start began with the cache the trusted step made');
});
