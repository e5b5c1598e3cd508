import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/util/log.js';
import { CodeCacheStore, type CodeCacheSubject } from '../../src/worker/code-cache.js';
import { makeStore } from '../store/helpers.js';

/** Code cache keys, claims and collection, on a real chunk store. */
const sha = 'a'.repeat(64);
const subject: CodeCacheSubject = { functionName: 'fn', version: '$LATEST', revisionId: 'r1', codeIdentity: sha, codeSha256: sha, runtimeId: 'nodejs24.x', binaryVersion: 'v24.21.0' };

test('a cache belongs to one function version, revision, code, layers and runtime binary', () => {
  const k = CodeCacheStore.key(subject);
  assert.match(k, new RegExp(`^${sha}-v2-[0-9a-f]{40}$`));
  const others: Partial<CodeCacheSubject>[] = [{ functionName: 'twin' }, { version: '1' }, { revisionId: 'r2' }, { codeIdentity: `${sha}-layers` }, { runtimeId: 'nodejs22.x' }, { binaryVersion: 'v24.22.0' }];
  for (const o of others) assert.notEqual(CodeCacheStore.key({ ...subject, ...o }), k, JSON.stringify(o));
});

test('one producer at a time, one cache per claim, within the size cap; a version with nothing to cache is not produced again', async () => {
  const { store } = makeStore();
  const caches = new CodeCacheStore(store, silentLogger, 1024);
  const key = CodeCacheStore.key(subject);
  await caches.load(key);
  const p = caches.claim(key);
  assert.ok(p !== undefined);
  assert.equal(caches.claim(key), undefined, 'claimed already');
  assert.equal(p.put(Buffer.alloc(1025)), false, 'over the cap');
  assert.equal(p.put(Buffer.from('cache')), true);
  assert.equal(p.put(Buffer.from('other')), false, 'once');
  assert.equal(caches.claim(key), undefined, 'a cache exists');
  assert.deepEqual((await caches.handle(key)).get(), Buffer.from('cache'));

  const none = CodeCacheStore.key({ ...subject, version: '2' });
  const q = caches.claim(none);
  assert.ok(q !== undefined && q.put(Buffer.alloc(0)));
  assert.equal((await caches.handle(none)).get(), undefined);
  assert.equal(caches.claim(none), undefined);

  // A producer that failed backs off; one that never started gives the claim back at once.
  const failed = CodeCacheStore.key({ ...subject, version: '3' });
  caches.claim(failed)?.release();
  assert.equal(caches.claim(failed), undefined);
  const skipped = CodeCacheStore.key({ ...subject, version: '4' });
  caches.claim(skipped)?.release(false);
  assert.ok(caches.claim(skipped) !== undefined);
});

test('caches keyed the old way (code and runtime only) and legacy cache files are dropped at start', async () => {
  const { store, dataDir } = makeStore();
  const caches = new CodeCacheStore(store, silentLogger);
  const current = CodeCacheStore.key(subject);
  const gone = CodeCacheStore.key({ ...subject, codeSha256: 'b'.repeat(64), codeIdentity: 'b'.repeat(64) });
  await store.putBlob(`code-cache/${current}`, 'code-cache', Buffer.from('kept'));
  await store.putBlob(`code-cache/${gone}`, 'code-cache', Buffer.from('unreferenced'));
  await store.putBlob(`code-cache/${sha}-nodejs24.x-v24.21.0`, 'code-cache', Buffer.from('poisoned'));
  assert.equal(caches.collect(new Set([sha])), 2);
  assert.deepEqual(store.names('code-cache'), [`code-cache/${current}`]);

  mkdirSync(join(dataDir, 'cache', 'code'), { recursive: true });
  writeFileSync(join(dataDir, 'cache', 'code', `${sha}-nodejs24.x-v24.21.0.bin`), 'poisoned');
  assert.equal(caches.dropLegacy(dataDir), true);
  assert.equal(existsSync(join(dataDir, 'cache', 'code')), false);
  assert.equal(store.names('code-cache').length, 1);
});
