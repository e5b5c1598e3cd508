import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CodeStore } from '../../src/control/code-store.js';
import { zipFiles } from '../helpers/server.js';
import { makeStore } from '../store/helpers.js';

function codeStore(): { code: CodeStore; runtime: string; has: (name: string) => boolean } {
  const { db, dataDir, store } = makeStore();
  const runtime = mkdtempSync('/dev/shm/thaw-code-store-test-');
  return { code: new CodeStore(db, dataDir, store, runtime), runtime, has: (n) => store.has(n) };
}

void test('an idle tree no environment has mounted is removed from tmpfs and materialised again on demand', async (t) => {
  const { code, runtime } = codeStore();
  t.after(() => rmSync(runtime, { recursive: true, force: true }));
  const { sha256 } = await code.put(await zipFiles({ 'index.js': 'exports.handler = async () => "idle";\n' }));
  code.release(sha256);
  assert.ok(existsSync(join(code.dir(sha256), 'index.js')));
  assert.equal(await code.evictIdle(new Set([sha256]), 0), 0, 'a mounted tree stays');
  assert.equal(await code.evictIdle(new Set(), 60_000), 0, 'a tree asked for within the idle time stays');
  assert.equal(await code.evictIdle(new Set(), 0), 1);
  assert.deepEqual(readdirSync(join(runtime, 'code')), [], 'nothing left in the runtime directory');
  const dir = await code.materialise(sha256);
  assert.equal(readFileSync(join(dir, 'index.js'), 'utf8'), 'exports.handler = async () => "idle";\n');
});

void test('collect removes an unreferenced package (row, store artifacts, tree) but never one a put still holds', async (t) => {
  const { code, runtime, has } = codeStore();
  t.after(() => rmSync(runtime, { recursive: true, force: true }));
  const { sha256 } = await code.put(await zipFiles({ 'index.js': 'exports.handler = async () => "held";\n' }));
  assert.equal(await code.collect(new Set()), 0, 'held until released');
  assert.ok(has(`code/${sha256}`));
  code.release(sha256);
  assert.equal(await code.collect(new Set([sha256])), 0, 'referenced');
  assert.equal(await code.collect(new Set()), 1);
  assert.ok(!has(`code/${sha256}`));
  assert.deepEqual(readdirSync(join(runtime, 'code')), []);
  assert.equal(code.storedBytes(), 0);
});
