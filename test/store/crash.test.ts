import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { CHUNK_SIZE } from '../../src/store/seal.js';
import { makeStore, pseudo, tempDir, writeTree } from './helpers.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'put-child.js');

test('killed -9 between chunk writes and the manifest commit: GC and reads stay consistent', async () => {
  const dataDir = tempDir();
  const shared = pseudo('shared', 2 * CHUNK_SIZE);
  const before = writeTree(tempDir(), { 'index.js': 'before', 'node_modules/dep/x.bin': shared });
  const during = writeTree(tempDir(), { 'index.js': 'during', 'node_modules/dep/x.bin': shared, 'big.bin': pseudo('big', 6 * CHUNK_SIZE) });
  // The secret is made by the parent so both processes share it.
  const first = makeStore(dataDir, {});
  first.db.close();

  const child = spawn(process.execPath, [CHILD, dataDir, before, during], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let durableDuring = 0;
  const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)));
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('committed before')) return;
      durableDuring = out.slice(out.indexOf('committed before')).split('\n').filter((l) => l.startsWith('durable ')).length;
      if (durableDuring >= 3) {
        child.kill('SIGKILL');
        resolve();
      }
    });
  });
  assert.equal(await exited, 'SIGKILL');
  assert.ok(!out.includes('committed during'));

  const { store } = makeStore(dataDir, {});
  assert.equal(store.has('code/during'), false, 'no manifest of the interrupted put');
  const beforeManifest = store.manifest('code/before');
  assert.ok(beforeManifest !== undefined);
  let orphans = 0;
  const referenced = store.referenced();
  for await (const c of store.chunks.origin.list()) if (!referenced.has(c.id)) orphans++;
  assert.ok(orphans >= 2, `the interrupted put left chunks behind (${orphans})`);

  const r = await store.collect({ graceMs: 0 });
  assert.equal(r.removed, orphans);
  for await (const c of store.chunks.origin.list()) assert.ok(referenced.has(c.id));
  const out1 = join(tempDir(), 'before');
  await store.materialiseTree('code/before', out1);
  assert.deepEqual(readFileSync(join(out1, 'node_modules/dep/x.bin')), shared);

  // The put can simply be done again.
  await store.putTree('code/during', 'code', during);
  const out2 = join(tempDir(), 'during');
  await store.materialiseTree('code/during', out2);
  assert.equal(readFileSync(join(out2, 'index.js'), 'utf8'), 'during');
});
