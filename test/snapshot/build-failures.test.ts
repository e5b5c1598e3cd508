import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SnapshotBuildError } from '../../src/snapshot/errors.js';
import { MANIFEST_FILE } from '../../src/snapshot/manifest.js';
import { buildFailure, buildFunction, tempDir, writeFiles, build } from './helpers.js';

/** What SnapStart refuses to snapshot, and how the owner is told. Every message here is a StateReason. */

let server: net.Server;
let port: number;
const sockets = new Set<net.Socket>();
before(async () => {
  server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});
after(() => {
  for (const s of sockets) s.destroy();
  server.close();
});

describe('open handles', () => {
  test('a socket Init leaves open fails the build with its address and where it was opened', async () => {
    const err = await buildFailure({
      'index.js': `'use strict';
const net = require('net');
const db = net.connect(${port}, '127.0.0.1');
db.on('error', () => {});
exports.handler = async () => 'never';
`,
    });
    assert.equal(err.code, 'OpenHandles');
    assert.equal(err.kind, 'user');
    assert.equal(err.stateReasonCode, 'FunctionError');
    assert.match(err.userMessage, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.match(err.userMessage, /net\.Socket/);
    assert.match(err.userMessage, /opened at index\.js:3:\d+/);
    assert.match(err.userMessage, /close them in a beforeCheckpoint hook/);
    assert.equal(err.details.length, 1);
  });

  test('the same socket closed in a beforeCheckpoint hook and reopened after restore is fine', async () => {
    const { result } = await buildFunction({
      'index.js': `'use strict';
const net = require('net');
let db = net.connect(${port}, '127.0.0.1');
globalThis.thaw.snapstart.registerBeforeCheckpoint(() => new Promise((resolve) => { db.once('close', resolve); db.destroy(); }));
globalThis.thaw.snapstart.registerAfterRestore(() => { db = net.connect(${port}, '127.0.0.1'); });
exports.handler = async () => db.readyState;
`,
    }, 'index.handler');
    assert.equal(result.manifest.hooks.before, 1);
  });

  test('a server listening after Init fails the build', async () => {
    const err = await buildFailure({
      'index.js': `require('net').createServer(() => {}).listen(0, '127.0.0.1');\nexports.handler = async () => 1;\n`,
    });
    assert.equal(err.code, 'OpenHandles');
    assert.match(err.userMessage, /a server listening on 127\.0\.0\.1:0 \(net\.Server\)/);
  });

  test('an interval or a long timer left pending fails the build, unref()ed or not', async () => {
    const interval = await buildFailure({ 'index.js': `setInterval(() => {}, 60000);\nexports.handler = async () => 1;\n` });
    assert.equal(interval.code, 'OpenHandles');
    assert.match(interval.userMessage, /a timer \(setInterval, 60000 ms\), opened at index\.js:1:\d+/);
    const unref = await buildFailure({ 'index.js': `exports.handler = async () => 1;\nsetTimeout(() => {}, 3600000).unref();\n` });
    assert.equal(unref.code, 'OpenHandles');
    assert.match(unref.userMessage, /a timer \(setTimeout, 3600000 ms\), opened at index\.js:2:\d+/);
  });

  test('a child process left running fails the build', async () => {
    const err = await buildFailure({
      'index.js': `require('child_process').spawn('/bin/sleep', ['30'], { stdio: 'ignore' });\nexports.handler = async () => 1;\n`,
    });
    assert.equal(err.code, 'OpenHandles');
    assert.match(err.userMessage, /a child process \(\/bin\/sleep, pid \d+\)/);
  });
});

describe('unsupported during Init', () => {
  test('a request with https during Init names the call and its place', async () => {
    const err = await buildFailure({
      'index.js': `'use strict';
const https = require('https');
const req = https.request('https://example.com/');
exports.handler = async () => 1;
`,
    });
    assert.equal(err.code, 'Unsupported');
    assert.match(err.userMessage, /https\.request\(\)/);
    assert.match(err.userMessage, /at index\.js:3:\d+/);
    assert.match(err.userMessage, /in the handler or in an afterRestore hook/);
  });

  test('fetch during Init, even when its promise is caught', async () => {
    const err = await buildFailure({
      'index.mjs': `const config = await Promise.resolve().then(() => null);\nexport const handler = async () => config;\n`,
    });
    assert.equal(err.code, 'BundleFailed'); // top-level await: see bundle.test.ts
    const fetched = await buildFailure({
      'index.js': `let config = null;\ntry { fetch('http://127.0.0.1:1/config').catch(() => {}); } catch {}\nexports.handler = async () => config;\n`,
    });
    assert.equal(fetched.code, 'Unsupported');
    assert.match(fetched.userMessage, /fetch\(\)/);
    assert.match(fetched.userMessage, /at index\.js:2:\d+/);
  });

  test('constructing a class that only exists with undici (new Headers()) during Init', async () => {
    const err = await buildFailure({ 'index.js': `const defaults = new Headers({ accept: 'application/json' });\nexports.handler = async () => defaults.get('accept');\n` });
    assert.equal(err.code, 'Unsupported');
    assert.match(err.userMessage, /new Headers\(\)/);
  });

  test('undici reached through globalThis during Init: V8 cannot serialise it, and the owner is told why', async () => {
    const err = await buildFailure({ 'index.js': `const H = globalThis.Headers;\nexports.handler = async () => typeof H;\n` });
    assert.equal(err.code, 'Unsupported');
    assert.match(err.userMessage, /fetch or Request\/Response\/Headers reached through globalThis/);
  });

  test('a native addon loaded during Init; the same addon required in the handler is fine', async () => {
    const files = { 'build/Release/addon.node': 'not an ELF file' };
    const err = await buildFailure({ ...files, 'index.js': `const addon = require('./build/Release/addon.node');\nexports.handler = async () => addon;\n` });
    assert.equal(err.code, 'Unsupported');
    assert.match(err.userMessage, /native addon .*addon\.node/);
    const { result } = await buildFunction({ ...files, 'index.js': `exports.handler = async () => require('./build/Release/addon.node');\n` }, 'index.handler');
    assert.ok(result.bundle.externals.some((e) => e.endsWith('build/Release/addon.node')));
  });

  test('a dynamic require of a file that exists but was not bundled', async () => {
    const err = await buildFailure({
      'plugins/a.js': 'module.exports = 1;\n',
      'index.js': `const path = require('path');\nconst file = path.join(__dirname, 'plugins', ['a', 'js'].join('.'));\nconst plugin = require(file);\nexports.handler = async () => plugin;\n`,
    });
    assert.equal(err.code, 'Unsupported');
    assert.match(err.userMessage, /could not be bundled/);
  });
});

describe('Init and hook failures', () => {
  test('Init throws: the error as Init would report it', async () => {
    const err = await buildFailure({ 'index.js': `'use strict';\nconst cfg = JSON.parse(process.env.CONFIG ?? 'null');\nif (cfg === null) throw new TypeError('CONFIG is not set');\nexports.handler = async () => cfg;\n` });
    assert.equal(err.code, 'InitFailed');
    assert.equal(err.errorType, 'TypeError');
    assert.equal(err.userMessage, 'TypeError: CONFIG is not set');
    assert.match(err.details[0] ?? '', /at index\.js:3:\d+/);
  });

  test('the handler is missing or not a function', async () => {
    const missing = await buildFailure({ 'index.js': `exports.other = async () => 1;\n` });
    assert.equal(missing.code, 'InitFailed');
    assert.equal(missing.errorType, 'Runtime.HandlerNotFound');
    assert.match(missing.userMessage, /index\.handler is undefined or not exported/);
    const notFn = await buildFailure({ 'index.js': `exports.handler = 42;\n` });
    assert.equal(notFn.errorType, 'Runtime.HandlerNotFound');
    assert.match(notFn.userMessage, /is not a function/);
  });

  test('a rejection Init leaves unhandled, or an exception thrown from a callback Init scheduled', async () => {
    const rejected = await buildFailure({ 'index.js': `Promise.reject(new RangeError('late failure'));\nexports.handler = async () => 1;\n` });
    assert.equal(rejected.code, 'InitFailed');
    assert.equal(rejected.errorType, 'RangeError');
    assert.match(rejected.userMessage, /late failure/);
    const thrown = await buildFailure({ 'index.js': `exports.handler = async () => 1;\nsetTimeout(() => { throw new SyntaxError('bad template'); }, 10);\n` });
    assert.equal(thrown.code, 'InitFailed');
    assert.equal(thrown.errorType, 'SyntaxError');
    assert.equal(thrown.userMessage, 'SyntaxError: bad template');
  });

  test('a beforeCheckpoint hook that fails', async () => {
    const err = await buildFailure({
      'index.js': `globalThis.thaw.snapstart.registerBeforeCheckpoint(async () => { throw new Error('flush failed'); });\nexports.handler = async () => 1;\n`,
    });
    assert.equal(err.code, 'HookFailed');
    assert.equal(err.userMessage, 'A beforeCheckpoint hook failed: Error: flush failed');
  });

  test('Init that never ends is stopped at the timeout', async () => {
    const err = await buildFailure({ 'index.js': `while (true) {}\n` }, 'index.handler', { timeoutMs: 3000 });
    assert.equal(err.code, 'Timeout');
    assert.match(err.userMessage, /did not finish within 3\.0 s/);
  });

  test('a failed build leaves no blob and no manifest', async () => {
    const root = await tempDir('failed');
    const codeDir = path.join(root, 'code');
    const outDir = path.join(root, 'snap');
    await writeFiles(codeDir, { 'index.js': `exports.handler = async () => 1;\n` });
    await build(codeDir, 'index.handler', outDir);
    assert.ok(existsSync(path.join(outDir, MANIFEST_FILE)));
    await writeFiles(codeDir, { 'index.js': `throw new Error('now broken');\n` });
    await assert.rejects(build(codeDir, 'index.handler', outDir), (e: unknown) => e instanceof SnapshotBuildError && e.code === 'InitFailed');
    assert.equal(existsSync(path.join(outDir, MANIFEST_FILE)), false);
    assert.equal(existsSync(path.join(outDir, 'snapshot.blob')), false);
  });
});
