import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { ROLE, decode, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

/**
 * Execution environments end to end: real server, real sandboxes, real runtimes, once per sandbox driver
 * (namespaces needs root and bubblewrap, as on CI). The isolation tests are for the namespaces driver only.
 */
const rootWithBwrap = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');
for (const driver of ['namespaces', 'process'] as const) {

const logOf = (r: InvokeCommandOutput): string => Buffer.from(r.LogResult ?? '', 'base64').toString();

describe(`execution environments (${driver} driver)`, { skip: driver === 'namespaces' && !rootWithBwrap ? 'needs root and /usr/bin/bwrap' : false }, () => {
  let s: RunningServer;
  const create = async (name: string, files: Record<string, string>, extra: Record<string, unknown> = {}): Promise<void> => {
    await s.client.send(new CreateFunctionCommand({
      FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles(files) }, ...extra,
    }));
  };
  const invoke = (name: string, payload: unknown = {}): Promise<InvokeCommandOutput> =>
    s.client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail' }));

  before(async () => {
    s = await startServer({ args: ['--driver', driver] });
    assert.match(s.output(), new RegExp(`sandbox driver: ${driver}`));
  });
  after(async () => {
    await s.stop();
  });

  test('Node CJS: warm reuse, Init Duration only on the cold start, Lambda variables, no host environment', async () => {
    await create('cjs', {
      'index.js': `let count = 0; const started = Date.now();
        exports.handler = async () => { count++; return { count, started, env: process.env }; };`,
    }, { MemorySize: 192 });
    const a = await invoke('cjs');
    const b = await invoke('cjs');
    const pa = decode(a.Payload) as { count: number; started: number; env: Record<string, string> };
    const pb = decode(b.Payload) as { count: number; started: number };
    assert.equal(pa.count, 1);
    assert.equal(pb.count, 2, 'second invocation reuses the warm environment');
    assert.equal(pa.started, pb.started);
    assert.match(logOf(a), /Init Duration: [\d.]+ ms/);
    assert.doesNotMatch(logOf(b), /Init Duration/);
    const env = pa.env;
    assert.equal(env.AWS_LAMBDA_FUNCTION_NAME, 'cjs');
    assert.equal(env.AWS_LAMBDA_FUNCTION_VERSION, '$LATEST');
    assert.equal(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE, '192');
    if (driver === 'namespaces') assert.equal(env.LAMBDA_TASK_ROOT, '/var/task');
    else assert.match(env.LAMBDA_TASK_ROOT ?? '', /\/code\/[0-9a-f]{64}$/, 'the process driver runs the code where it lies');
    assert.equal(env._HANDLER, 'index.handler');
    assert.equal(env.AWS_REGION, 'us-east-1');
    assert.equal(env.TZ, ':UTC');
    assert.ok(env.AWS_LAMBDA_RUNTIME_API);
    for (const k of ['NODE_EXTRA_CA_CERTS', 'HOME', 'THAW_SECRET_ACCESS_KEY', 'THAW_ACCESS_KEY_ID', 'USER']) {
      assert.equal(env[k], undefined, `host variable ${k} must not leak`);
    }
  });

  test('Node ESM (.mjs and type:module) and callback handlers', async () => {
    await create('esm', { 'index.mjs': 'export const handler = async (e) => ({ esm: true, e });' });
    assert.deepEqual(decode((await invoke('esm', { a: 1 })).Payload), { esm: true, e: { a: 1 } });
    await create('esm-pkg', { 'package.json': '{"type":"module"}', 'app/main.js': 'export async function run(e) { return { pkg: true }; }' }, { Handler: 'app/main.run' });
    assert.deepEqual(decode((await invoke('esm-pkg')).Payload), { pkg: true });
    await create('cb', { 'index.js': 'exports.handler = (e, ctx, cb) => { setTimeout(() => cb(null, { cb: ctx.awsRequestId.length }), 5); };' });
    assert.deepEqual(decode((await invoke('cb')).Payload), { cb: 36 });
  });

  test('Python handler, error and context', async () => {
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'py', Runtime: 'python3.11', Role: ROLE, Handler: 'app.handler',
      Code: { ZipFile: await zipFiles({ 'app.py': 'import os\ndef handler(event, context):\n    print("py log", event)\n    if event.get("fail"):\n        raise ValueError("bad value")\n    return {"py": True, "fn": context.function_name, "mem": context.memory_limit_in_mb, "left": context.get_remaining_time_in_millis() > 0}\n' }) },
    }));
    const r = await invoke('py', { x: 1 });
    assert.deepEqual(decode(r.Payload), { py: true, fn: 'py', mem: '128', left: true });
    assert.match(logOf(r), /py log/);
    const f = await invoke('py', { fail: true });
    assert.equal(f.FunctionError, 'Unhandled');
    assert.deepEqual({ ...(decode(f.Payload) as object), stackTrace: undefined, requestId: undefined }, { errorType: 'ValueError', errorMessage: 'bad value', stackTrace: undefined, requestId: undefined });
  });

  test('custom runtime: a shell bootstrap speaking the Runtime API with curl', async () => {
    const bootstrap = `#!/bin/sh
set -eu
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -sS -LD "$HEADERS" "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/next")
  ID=$(grep -i Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  case "$EVENT" in
    *fail*) curl -sS -X POST -H 'Lambda-Runtime-Function-Error-Type: Custom.Fail' -d '{"errorMessage":"shell failed","errorType":"Custom.Fail"}' "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/$ID/error" >/dev/null ;;
    *) echo "shell got $EVENT"; curl -sS -X POST -d "{\\"echo\\":$EVENT,\\"handler\\":\\"$_HANDLER\\"}" "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/$ID/response" >/dev/null ;;
  esac
done
`;
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'shell', Runtime: 'provided.al2023', Role: ROLE, Handler: 'function.handler', Code: { ZipFile: await zipFiles({ 'bootstrap*': bootstrap }) },
    }));
    const r = await invoke('shell', { hi: 1 });
    assert.deepEqual(decode(r.Payload), { echo: { hi: 1 }, handler: 'function.handler' });
    assert.match(logOf(r), /shell got \{"hi":1\}/);
    const f = await invoke('shell', { fail: 1 });
    assert.equal(f.FunctionError, 'Unhandled');
    assert.deepEqual(decode(f.Payload), { errorMessage: 'shell failed', errorType: 'Custom.Fail' });
    const again = await invoke('shell', { n: 2 });
    assert.deepEqual(decode(again.Payload), { echo: { n: 2 }, handler: 'function.handler' });
  });

  test('timeout: Sandbox.Timedout, environment replaced, next invocation works', async () => {
    await create('slow', { 'index.js': 'let n = 0; exports.handler = async (e) => { n++; if (e.hang) await new Promise(() => setInterval(() => {}, 1000)); return { n }; };' }, { Timeout: 1 });
    assert.deepEqual(decode((await invoke('slow')).Payload), { n: 1 });
    const t = await invoke('slow', { hang: true });
    assert.equal(t.FunctionError, 'Unhandled');
    const body = decode(t.Payload) as { errorType: string; errorMessage: string };
    assert.equal(body.errorType, 'Sandbox.Timedout');
    assert.match(body.errorMessage, /Task timed out after 1\.00 seconds/);
    assert.match(logOf(t), /Task timed out after 1\.00 seconds/);
    const next = await invoke('slow');
    assert.deepEqual(decode(next.Payload), { n: 1 }, 'a fresh environment serves the next invocation');
  });

  test('crash: Runtime.ExitError with the exit status', async () => {
    await create('crash', { 'index.js': 'exports.handler = async (e) => { if (e.exit) { setImmediate(() => process.exit(3)); await new Promise(() => {}); } return "alive"; };' });
    const c = await invoke('crash', { exit: true });
    assert.equal(c.FunctionError, 'Unhandled');
    const body = decode(c.Payload) as { errorType: string; errorMessage: string };
    assert.equal(body.errorType, 'Runtime.ExitError');
    assert.match(body.errorMessage, /Runtime exited with error: exit status 3/);
    assert.equal(decode((await invoke('crash')).Payload), 'alive');
  });

  test('out of memory: Runtime.OutOfMemory', async () => {
    await create('oom', {
      'index.js': 'const keep = []; exports.handler = async (e) => { if (e.eat) { for (;;) { keep.push(Buffer.alloc(16 * 1024 * 1024, 1)); } } return "ok"; };',
    }, { MemorySize: 128 });
    const o = await invoke('oom', { eat: true });
    assert.equal(o.FunctionError, 'Unhandled');
    assert.equal((decode(o.Payload) as { errorType: string }).errorType, 'Runtime.OutOfMemory');
    assert.equal(decode((await invoke('oom')).Payload), 'ok');
  });

  test('init errors: Runtime.ImportModuleError and Runtime.HandlerNotFound; fixing the code fixes the function', async () => {
    await create('broken', { 'index.js': 'throw new Error("init exploded");' });
    const b = await invoke('broken');
    assert.equal(b.FunctionError, 'Unhandled');
    const be = decode(b.Payload) as { errorType: string; errorMessage: string };
    assert.match(be.errorType, /^Runtime\.(ImportModuleError|UserCodeSyntaxError)$|^Error$/);
    assert.match(be.errorMessage, /init exploded/);
    await create('nohandler', { 'index.js': 'exports.other = async () => 1;' });
    const n = await invoke('nohandler');
    assert.equal((decode(n.Payload) as { errorType: string }).errorType, 'Runtime.HandlerNotFound');
    await create('nomodule', { 'other.js': '' });
    assert.equal((decode((await invoke('nomodule')).Payload) as { errorType: string }).errorType, 'Runtime.ImportModuleError');
    // The next invocation gets a fresh attempt at Init.
    assert.equal((decode((await invoke('nohandler')).Payload) as { errorType: string }).errorType, 'Runtime.HandlerNotFound');
  });

  describe('isolation', { skip: driver !== 'namespaces' ? 'the process driver isolates nothing' : false }, () => {
    let hostServer: Server;
    let hostPort = 0;
    before(async () => {
      hostServer = createServer((_q, r) => r.end('host secret service'));
      await new Promise<void>((r) => hostServer.listen(0, '127.0.0.1', () => r()));
      hostPort = (hostServer.address() as AddressInfo).port;
      mkdirSync(join(s.dataDir, 'probe'), { recursive: true });
      writeFileSync(join(s.dataDir, 'probe', 'secret.txt'), 'data dir secret');
    });
    after(() => {
      hostServer.close();
    });

    test('a function cannot read the data directory or other code, write outside /tmp, see host processes or reach host loopback', async () => {
      await create('victim', { 'index.js': 'exports.handler = async () => "victim code";', 'victim-secret.txt': 'victim secret' });
      await create('probe', {
        'index.js': `const fs = require('fs'); const net = require('net');
          const tryRead = (p) => { try { return fs.readFileSync(p, 'utf8'); } catch (e) { return 'ERR ' + e.code; } };
          const tryWrite = (p) => { try { fs.writeFileSync(p, 'x'); return 'WROTE'; } catch (e) { return 'ERR ' + e.code; } };
          const tryList = (p) => { try { return fs.readdirSync(p); } catch (e) { return 'ERR ' + e.code; } };
          const connect = (port) => new Promise((res) => { const s = net.connect(port, '127.0.0.1'); s.on('connect', () => { s.destroy(); res('CONNECTED'); }); s.on('error', (e) => res('ERR ' + e.code)); setTimeout(() => { s.destroy(); res('TIMEOUT'); }, 2000); });
          exports.handler = async (e) => ({
            dataFile: tryRead(e.dataFile), dataDir: tryList(e.dataDir), db: tryRead(e.dataDir + '/thaw.db'),
            codeRoot: tryList(e.dataDir + '/code'), writeTask: tryWrite('/var/task/x'), writeUsr: tryWrite('/usr/x'),
            writeRoot: tryWrite('/x'), writeTmp: tryWrite('/tmp/x'), procs: tryList('/proc').filter((x) => /^\\d+$/.test(x)),
            hostLoopback: await connect(e.port), home: tryList('/root'), work: tryList('/work'),
          });`,
      });
      const r = decode((await invoke('probe', { dataFile: join(s.dataDir, 'probe', 'secret.txt'), dataDir: s.dataDir, port: hostPort })).Payload) as Record<string, unknown>;
      assert.match(String(r.dataFile), /^ERR /);
      assert.match(String(r.dataDir), /^ERR /);
      assert.match(String(r.db), /^ERR /);
      assert.match(String(r.codeRoot), /^ERR /);
      assert.match(String(r.writeTask), /^ERR (EROFS|EACCES|EPERM)/);
      assert.match(String(r.writeUsr), /^ERR (EROFS|EACCES|EPERM)/);
      assert.match(String(r.writeRoot), /^ERR (EROFS|EACCES|EPERM)/);
      assert.equal(r.writeTmp, 'WROTE');
      assert.ok(Array.isArray(r.procs) && r.procs.length <= 4, `sees only its own processes: ${JSON.stringify(r.procs)}`);
      assert.notEqual(r.hostLoopback, 'CONNECTED');
      assert.match(String(r.home), /^ERR /);
      assert.match(String(r.work), /^ERR /);
    });
  });
});
}
