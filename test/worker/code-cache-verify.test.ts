import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import vm from 'node:vm';
import { verifyCodeCache } from '../../src/worker/code-cache-verify.js';

/** The host's check of an uploaded code cache against the version's own files (real files, real V8 caches). */
const task = mkdtempSync(join(tmpdir(), 'thaw-ccv-task-'));
const opt = mkdtempSync(join(tmpdir(), 'thaw-ccv-opt-'));
const outside = mkdtempSync(join(tmpdir(), 'thaw-ccv-outside-'));
writeFileSync(join(task, 'value.js'), 'module.exports = "good";\n');
mkdirSync(join(task, 'lib'));
writeFileSync(join(task, 'lib', 'a.js'), '\uFEFFexports.a = () => "é";\n');
writeFileSync(join(opt, 'layer.js'), 'exports.l = 1;\n');
writeFileSync(join(outside, 'secret.js'), 'module.exports = "secret";\n');
symlinkSync(join(outside, 'secret.js'), join(task, 'link.js'));
symlinkSync(outside, join(task, 'dirlink'));
const roots = new Map([['/var/task/', task], ['/opt/', opt]]);

/** A V8 cache of `source` wrapped as the runtime wraps CommonJS. */
const cacheOf = (source: string, filename: string): Buffer => new vm.Script(Module.wrap(source), { filename }).createCachedData();

function wire(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const u = (x: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(x); return b; };
    parts.push(u(n.length), n, u(data.length), data);
  }
  return Buffer.concat(parts);
}

test('entries compiled from the version\'s own files are kept, in the same wire format', async () => {
  const buf = wire([
    ['/var/task/value.js', cacheOf('module.exports = "good";\n', '/var/task/value.js')],
    ['/var/task/lib/a.js', cacheOf('\uFEFFexports.a = () => "é";\n', '/var/task/lib/a.js')],
    ['/opt/layer.js', cacheOf('exports.l = 1;\n', '/opt/layer.js')],
  ]);
  const v = await verifyCodeCache(buf, roots);
  assert.deepEqual({ kept: v.kept, dropped: v.dropped }, { kept: 3, dropped: 0 });
  assert.deepEqual(v.data, buf);
});

test('entries for sources of another length, paths outside the code, symlinks out of it and non-files are dropped', async () => {
  const good = cacheOf('module.exports = "good";\n', '/var/task/value.js');
  const v = await verifyCodeCache(wire([
    ['/var/task/value.js', cacheOf('module.exports = "longer!";\n', '/var/task/value.js')],
    ['/var/task/../../etc/passwd', good],
    ['/var/task/./value.js', good],
    ['/etc/passwd', good],
    ['/var/task/link.js', cacheOf('module.exports = "secret";\n', '/var/task/link.js')],
    ['/var/task/dirlink/secret.js', cacheOf('module.exports = "secret";\n', '/var/task/dirlink/secret.js')],
    ['/var/task/lib', good],
    ['/var/task/absent.js', good],
    ['/opt/value.js', good],
    ['/var/task/lib/a.js', Buffer.alloc(64, 0)],
  ]), roots);
  assert.deepEqual({ kept: v.kept, dropped: v.dropped }, { kept: 0, dropped: 10 });
  assert.equal(v.data.length, 0);
});

test('a malformed cache is refused whole', async () => {
  const good = wire([['/var/task/value.js', cacheOf('module.exports = "good";\n', '/var/task/value.js')]]);
  await assert.rejects(verifyCodeCache(good.subarray(0, good.length - 1), roots), /bad entry data length/);
  await assert.rejects(verifyCodeCache(Buffer.concat([good, Buffer.from([1, 2])]), roots), /truncated entry/);
  await assert.rejects(verifyCodeCache(Buffer.concat([good, good]), roots), /duplicate entry/);
  const huge = Buffer.alloc(8);
  huge.writeUInt32LE(0xffffffff);
  await assert.rejects(verifyCodeCache(huge, roots), /bad entry name length/);
});
