import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand, LambdaClient, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS, ROLE, decode, signedHeaders, zipFiles } from '../helpers/server.js';

/** Stem cells and the post-init code cache, end to end (namespaces driver: root and bubblewrap). */
const usable = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');
let thaw: Thaw;
let client: LambdaClient;

before(async () => {
  if (!usable) return;
  thaw = await startThaw({ port: 0, dataDir: mkdtempSync(join(tmpdir(), 'thaw-stems-')), credentials: CREDS, driver: 'namespaces' });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
});
after(async () => {
  if (!usable) return;
  client.destroy();
  await thaw.close();
});

const logOf = (r: InvokeCommandOutput): string => Buffer.from(r.LogResult ?? '', 'base64').toString();
const startPath = (r: InvokeCommandOutput): string | undefined => /Start Path: (\S+)/.exec(logOf(r))?.[1];

async function drain(name: string): Promise<void> {
  const url = new URL(`/thaw/v1/functions/${name}/drain`, thaw.url);
  const res = await fetch(url, { method: 'POST', headers: await signedHeaders(url, 'POST') });
  assert.equal(res.status, 200);
}

/** Cold invokes until one was served by a stem cell (the pool refills in the background). */
async function coldFromStem(name: string, payload: unknown = {}): Promise<InvokeCommandOutput> {
  for (let i = 0; i < 40; i++) {
    await drain(name);
    const r = await client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail' }));
    if (startPath(r)?.startsWith('stem') === true) return r;
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error('no cold start was served by a stem cell');
}

test('a stem cell becomes the function: code at /var/task, its variables, its memory limit, code cache on later starts', { skip: usable ? false : 'needs root and bubblewrap' }, async () => {
  await client.send(new CreateFunctionCommand({
    FunctionName: 'stemmed', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'app/main.handler', MemorySize: 512,
    Environment: { Variables: { COLOUR: 'teal' } },
    Code: {
      ZipFile: await zipFiles({
        'app/main.js': `const helper = require('./helper');
          exports.handler = async (e, ctx) => {
            let held = null;
            if (e.allocate) { held = Buffer.alloc(e.allocate * 1024 * 1024, 1); }
            const task = require('fs').readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter((l) => l.split(' ')[4] === '/var/task').pop();
            return { task: task === undefined ? 'none' : task.split(' ')[5].split(',')[0], cwd: process.cwd(), files: require('fs').readdirSync('/var/task').sort(), colour: process.env.COLOUR,
              handler: process.env._HANDLER, name: ctx.functionName, mem: ctx.memoryLimitInMB, helper: helper(), held: held ? held.length : 0 };
          };`,
        'app/helper.js': 'module.exports = () => "helped";',
      }),
    },
  }));
  const r = await coldFromStem('stemmed');
  assert.equal(r.FunctionError, undefined, JSON.stringify(decode(r.Payload)));
  assert.deepEqual(decode(r.Payload), { task: 'ro', cwd: '/var/task', files: ['app'], colour: 'teal', handler: 'app/main.handler', name: 'stemmed', mem: '512', helper: 'helped', held: 0 });
  // The stem booted with a small limit; the function's 512 MB applies once specialised.
  const big = await client.send(new InvokeCommand({ FunctionName: 'stemmed', Payload: Buffer.from('{"allocate":300}') }));
  assert.equal(big.FunctionError, undefined, JSON.stringify(decode(big.Payload)));
  assert.equal((decode(big.Payload) as { held: number }).held, 300 * 1024 * 1024);
  // The first cold start produced the post-init code cache; a later one starts with it.
  let withCache: string | undefined;
  for (let i = 0; i < 10 && withCache === undefined; i++) {
    const c = await coldFromStem('stemmed');
    if (startPath(c)?.includes('code-cache') === true) withCache = startPath(c);
  }
  assert.equal(withCache, 'stem+code-cache');
});

test('a stem cell specialised for one function shows nothing of another', { skip: usable ? false : 'needs root and bubblewrap' }, async () => {
  await client.send(new CreateFunctionCommand({ FunctionName: 'other', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles({ 'index.js': 'exports.handler = async () => 1;', 'other-secret.txt': 's' }) } }));
  await client.send(new CreateFunctionCommand({ FunctionName: 'looker', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles({ 'index.js': 'exports.handler = async () => require("fs").readdirSync("/var/task").sort();' }) } }));
  await coldFromStem('other');
  const r = await coldFromStem('looker');
  assert.deepEqual(decode(r.Payload), ['index.js']);
});
