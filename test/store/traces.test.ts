import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { DirTier } from '../../src/store/dir-tier.js';
import { MemoryTier } from '../../src/store/memory-tier.js';
import { MAX_TRACE_CHUNKS, Store, TRACE_HASH } from '../../src/store/store.js';
import { AccessTraces, type StartSubject } from '../../src/store/traces.js';
import type { ChunkInfo, ChunkTier } from '../../src/store/tier.js';
import { CHUNK_SIZE } from '../../src/store/seal.js';
import { makeStore, pseudo, tempDir, writeTree } from './helpers.js';

/** An origin that records the order of its reads and how many run at once. */
class Watched implements ChunkTier {
  readonly name = 'origin';
  readonly order: string[] = [];
  active = 0;
  maxActive = 0;
  constructor(private readonly inner: ChunkTier) {}
  async get(id: string): Promise<Buffer | undefined> {
    this.order.push(id);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise((r) => setTimeout(r, 5));
    this.active--;
    return this.inner.get(id);
  }
  put(id: string, d: Buffer): Promise<void> { return this.inner.put(id, d); }
  has(id: string): Promise<boolean> { return this.inner.has(id); }
  delete(id: string): Promise<void> { return this.inner.delete(id); }
  list(): AsyncIterable<ChunkInfo> { return this.inner.list(); }
}

const subject: StartSubject = { key: 'fn:1:sha', functionName: 'fn', version: '1', codeSha256: 'sha' };

test('the first cold start records its chunk order; a cold worker prefetches in that order, in parallel', async () => {
  const { store, db, dataDir } = makeStore();
  await store.putTree('code/sha', 'code', writeTree(tempDir(), { 'index.js': 'x', 'a.bin': pseudo('a', 3 * CHUNK_SIZE), 'node_modules/d/i.js': pseudo('d', 1000) }));
  await store.putBlob('snapshot/fn/1', 'snapshot', pseudo('s', 4 * CHUNK_SIZE));

  // First cold start: snapshot first, then code (recorded across both artifacts).
  const first = new AccessTraces(store);
  first.begin(subject);
  await store.materialiseBlob('snapshot/fn/1', join(tempDir(), 'blob'), first.forSnapshot('fn', '1'));
  await store.materialiseTree('code/sha', join(tempDir(), 'code'), first.forCode('sha'));
  await new Promise((r) => setImmediate(r));
  const trace = store.trace(subject.key);
  const snap = store.manifest('snapshot/fn/1');
  const code = store.manifest('code/sha');
  assert.ok(trace !== undefined && snap !== undefined && code !== undefined);
  assert.deepEqual(trace, [...new Set([...snap.chunks, ...code.chunks].map((c) => c.h))]);

  // A worker with an empty cache.
  const watched = new Watched(new DirTier(join(dataDir, 'store'), { durable: true }));
  const cold = new Store(new ChunkStore(store.chunks.sealer, [new MemoryTier(1 << 26), watched]), db);
  const traces = new AccessTraces(cold, { parallel: 4 });
  traces.begin(subject);
  await cold.materialiseBlob('snapshot/fn/1', join(tempDir(), 'blob'), traces.forSnapshot('fn', '1'));
  await cold.materialiseTree('code/sha', join(tempDir(), 'code'), traces.forCode('sha'));
  assert.deepEqual(watched.order, trace.map((h) => cold.chunks.locator(h)), 'each chunk fetched once, in trace order');
  assert.ok(watched.maxActive > 1, 'prefetch runs in parallel');
  assert.equal(watched.maxActive <= 4, true, 'bounded parallelism');
});

test('a trace is bounded and holds only chunk hashes, whatever the artifacts it records were', async () => {
  const { store } = makeStore();
  const hash = (i: number): string => createHash('sha256').update(String(i)).digest('hex');
  const traces = new AccessTraces(store);
  traces.begin(subject);
  const onChunk = traces.forCode('sha').onChunk;
  assert.ok(onChunk !== undefined);
  // An artifact of far more chunks than any version reads (a huge snapshot or code cache), and names that are not hashes.
  for (let i = 0; i < MAX_TRACE_CHUNKS + 2000; i++) onChunk(hash(i));
  onChunk('../../../etc/passwd');
  await new Promise((r) => setImmediate(r));
  const saved = store.trace(subject.key);
  assert.equal(saved?.length, MAX_TRACE_CHUNKS);
  assert.ok(saved.every((h) => TRACE_HASH.test(h)));

  // Rows of any other shape are no trace at all (the next cold start records afresh); an over-long one is cut.
  for (const bad of [['../../x'], [1, 2], { a: 1 }, 'x']) {
    store.saveTrace('bad', bad as unknown as string[]);
    assert.equal(store.trace('bad'), undefined, JSON.stringify(bad));
  }
  store.saveTrace('long', Array.from({ length: MAX_TRACE_CHUNKS + 5 }, (_, i) => hash(i)));
  assert.equal(store.trace('long')?.length, MAX_TRACE_CHUNKS);
});
