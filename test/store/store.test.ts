import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync, writeFileSync, rmSync, statSync, lstatSync, readlinkSync, chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isStoreError } from '../../src/store/errors.js';
import { CHUNK_SIZE, Sealer, loadSecret } from '../../src/store/seal.js';
import { segmentOf } from '../../src/store/pack.js';
import { makeStore, pseudo, tempDir, writeTree, dependencies } from './helpers.js';

function originFiles(dataDir: string): string[] {
  const root = join(dataDir, 'store');
  return readdirSync(root).filter((d) => /^[0-9a-f]{2}$/.test(d)).flatMap((d) => readdirSync(join(root, d)).map((f) => join(root, d, f)));
}

test('convergent sealing: equal plaintext gives equal ciphertext, another secret gives another, nothing is readable without it', () => {
  const a = new Sealer(Buffer.alloc(32, 1));
  const b = new Sealer(Buffer.alloc(32, 2));
  const plain = Buffer.from('exports.handler = async () => "secret-marker-123";');
  const s1 = a.seal(plain);
  const s2 = a.seal(Buffer.from(plain));
  assert.deepEqual(s1.sealed, s2.sealed);
  assert.equal(s1.locator, s2.locator);
  assert.notEqual(s1.locator, s1.hash, 'stored under a name that does not reveal the plaintext hash');
  const other = b.seal(plain);
  assert.notDeepEqual(other.sealed, s1.sealed);
  assert.notEqual(other.locator, s1.locator);
  assert.ok(!s1.sealed.includes(Buffer.from('secret-marker')));
  assert.deepEqual(a.open(s1.hash, s1.sealed), plain);
  assert.throws(() => b.open(s1.hash, s1.sealed), (e) => isStoreError(e, 'ChunkCorrupt'));
  const flipped = Buffer.from(s1.sealed);
  flipped[5] = (flipped[5] as number) ^ 1;
  assert.throws(() => a.open(s1.hash, flipped), (e) => isStoreError(e, 'ChunkCorrupt'));
});

test('the deployment secret is created once, mode 0600, or taken from the environment', () => {
  const dir = tempDir();
  const file = join(dir, 'store.key');
  const s1 = loadSecret(file, {});
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(loadSecret(file, {}), s1);
  assert.deepEqual(loadSecret(file, { THAW_STORE_SECRET: 'b'.repeat(64) }), Buffer.alloc(32, 0xbb));
});

test('segments: dependency directories and large files start their own', () => {
  assert.equal(segmentOf('index.js', 10), '');
  assert.equal(segmentOf('node_modules/a/index.js', 10), 'node_modules/a');
  assert.equal(segmentOf('node_modules/@s/a/lib/x.js', 10), 'node_modules/@s/a');
  assert.equal(segmentOf('node_modules/a/node_modules/b/x.js', 10), 'node_modules/a/node_modules/b');
  assert.equal(segmentOf('node_modules/a/big.bin', 1 << 20), 'node_modules/a/big.bin');
  assert.equal(segmentOf('node_modules/x.js', 10), '');
});

test('a tree round-trips: contents, modes, empty files, directories, links', async () => {
  const { store } = makeStore();
  const src = writeTree(tempDir(), {
    'index.js': 'exports.handler = 1;',
    'empty.txt': '',
    'bin/run': '#!/bin/sh\necho hi\n',
    'big.bin': pseudo('big', 3 * CHUNK_SIZE + 17),
    ...dependencies('d', 4, 20_000),
  });
  chmodSync(join(src, 'bin/run'), 0o755);
  symlinkSync('index.js', join(src, 'link.js'));
  writeTree(src, { 'emptydir/.keep': '' });
  const m = await store.putTree('code/t', 'code', src);
  assert.ok(m.chunks.every((c) => c.n <= CHUNK_SIZE));
  const out = join(tempDir(), 'tree');
  await store.materialiseTree('code/t', out);
  for (const rel of ['index.js', 'empty.txt', 'bin/run', 'big.bin', 'node_modules/@scope/pkg0/lib/util.js', 'node_modules/pkg1/index.js']) {
    assert.deepEqual(readFileSync(join(out, rel)), readFileSync(join(src, rel)), rel);
  }
  assert.equal(statSync(join(out, 'bin/run')).mode & 0o777, 0o755);
  assert.equal(statSync(join(out, 'index.js')).mode & 0o777, 0o644);
  assert.ok(lstatSync(join(out, 'link.js')).isSymbolicLink());
  assert.equal(readlinkSync(join(out, 'link.js')), 'index.js');
  assert.ok(existsSync(join(out, 'emptydir')));
});

test('a blob round-trips and is stored only as ciphertext', async () => {
  const { store, dataDir } = makeStore();
  const data = Buffer.concat([Buffer.from('PLAINTEXT-MARKER-7731 '.repeat(1000)), pseudo('b', 2 * CHUNK_SIZE)]);
  const m = await store.putBlob('snapshot/f/1', 'snapshot', data, { note: 'x' });
  assert.equal(m.chunks.length, 3);
  assert.deepEqual(await store.readBlob('snapshot/f/1', { parallel: 4 }), data);
  for (const f of originFiles(dataDir)) assert.ok(!readFileSync(f).includes(Buffer.from('PLAINTEXT-MARKER')), f);
});

test('a tampered cache copy is dropped and read again from the origin', async () => {
  const { store } = makeStore();
  const data = pseudo('t', CHUNK_SIZE + 100);
  const m = await store.putBlob('b', 'code-cache', data);
  const memory = store.chunks.tiers[0];
  assert.ok(memory !== undefined);
  const id = store.chunks.locator(m.chunks[0]?.h as string);
  await memory.put(id, Buffer.from('garbage that is not a sealed chunk at all'));
  assert.deepEqual(await store.readBlob('b'), data);
  const stats = store.chunks.stats();
  assert.equal(stats[0]?.corrupt, 1);
  // The cache was repaired from the origin.
  assert.deepEqual(store.chunks.sealer.open(m.chunks[0]?.h as string, (await memory.get(id)) as Buffer).length, CHUNK_SIZE);
});

test('a tampered or missing origin chunk fails clearly and nothing is materialised', async () => {
  const { store, dataDir } = makeStore();
  const src = writeTree(tempDir(), { 'index.js': 'exports.handler = () => "TAMPER-MARKER";', 'data.bin': pseudo('x', 2 * CHUNK_SIZE) });
  const m = await store.putTree('code/x', 'code', src);
  const id = store.chunks.locator(m.chunks[0]?.h as string);
  const file = join(dataDir, 'store', id.slice(0, 2), id);
  const bytes = readFileSync(file);
  bytes[bytes.length - 20] = (bytes[bytes.length - 20] as number) ^ 0xff;
  writeFileSync(file, bytes);
  const out = join(tempDir(), 'code');
  await assert.rejects(store.materialiseTree('code/x', out), (e) => isStoreError(e, 'ChunkCorrupt') && /corrupt/.test(e.message));
  assert.equal(existsSync(out), false, 'nothing of a corrupt artifact is left to run');
  rmSync(file);
  await assert.rejects(store.materialiseTree('code/x', out), (e) => isStoreError(e, 'ChunkMissing'));
  assert.equal(existsSync(out), false);
  await assert.rejects(store.readBlob('nope'), (e) => isStoreError(e, 'ArtifactMissing'));
});

test('concurrent reads of one chunk are one origin read', async () => {
  const { store } = makeStore();
  const m = await store.putBlob('c', 'code-cache', pseudo('c', 1000));
  const h = m.chunks[0]?.h as string;
  await store.chunks.tiers[0]?.delete(store.chunks.locator(h));
  const before = store.chunks.stats()[1]?.hits ?? 0;
  await Promise.all(Array.from({ length: 10 }, () => store.chunks.read(h)));
  assert.equal((store.chunks.stats()[1]?.hits ?? 0) - before, 1);
});
