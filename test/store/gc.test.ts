import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeStore, pseudo, tempDir, writeTree } from './helpers.js';
import { CHUNK_SIZE } from '../../src/store/seal.js';

async function originIds(list: AsyncIterable<{ id: string }>): Promise<Set<string>> {
  const s = new Set<string>();
  for await (const c of list) s.add(c.id);
  return s;
}

test('GC keeps every chunk a committed manifest names and removes the rest', async () => {
  const { store } = makeStore();
  const shared = pseudo('shared', 2 * CHUNK_SIZE);
  const a = await store.putTree('code/a', 'code', writeTree(tempDir(), { 'index.js': 'a', 'node_modules/dep/x.bin': shared }));
  const b = await store.putTree('code/b', 'code', writeTree(tempDir(), { 'index.js': 'b', 'node_modules/dep/x.bin': shared, 'own.bin': pseudo('own', CHUNK_SIZE) }));
  const before = await originIds(store.chunks.origin.list());
  assert.equal(before.size, new Set([...a.chunks, ...b.chunks].map((c) => c.h)).size);

  assert.equal((await store.collect({ graceMs: 0 })).removed, 0, 'nothing unreferenced yet');
  store.remove('code/b');
  const r = await store.collect({ graceMs: 0 });
  const after = await originIds(store.chunks.origin.list());
  for (const c of a.chunks) assert.ok(after.has(store.chunks.locator(c.h)), 'a chunk of a committed manifest survives');
  const onlyB = b.chunks.filter((c) => !a.chunks.some((x) => x.h === c.h));
  assert.ok(onlyB.length >= 2);
  for (const c of onlyB) assert.ok(!after.has(store.chunks.locator(c.h)), 'a chunk only b named is gone');
  assert.equal(r.removed, onlyB.length);
  const out = tempDir();
  await store.materialiseTree('code/a', `${out}/a`);
});

test('GC leaves young unreferenced chunks alone (another process may be about to commit them)', async () => {
  const { store } = makeStore();
  await store.chunks.write(pseudo('orphan', 1000));
  store.chunks.unpin([]);
  const r = await store.collect();
  assert.equal(r.removed, 0);
  assert.equal(r.kept, 1);
});

test('GC never removes chunks of a put in progress in this process', async () => {
  const { store } = makeStore();
  const ref = await store.chunks.write(pseudo('pinned', 1000));
  assert.equal((await store.collect({ graceMs: 0 })).removed, 0);
  store.chunks.unpin([ref]);
  assert.equal((await store.collect({ graceMs: 0 })).removed, 1);
});

test('expiry removes artifacts unused for the period, and their chunks go at the next collect', async () => {
  const { store } = makeStore();
  await store.putBlob('snapshot/f/1', 'snapshot', pseudo('s1', 1000));
  await store.putBlob('snapshot/f/2', 'snapshot', pseudo('s2', 1000));
  const day = 24 * 60 * 60 * 1000;
  store.touch('snapshot/f/1', Date.now() - 15 * day);
  assert.deepEqual(store.expire('snapshot', 14 * day), ['snapshot/f/1']);
  assert.equal(store.has('snapshot/f/2'), true);
  assert.equal((await store.collect({ graceMs: 0 })).removed, 1);
});
