import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dependencies, makeStore, pseudo, tempDir, writeTree } from './helpers.js';

test('N packages sharing a node_modules tree cost little more than one', async () => {
  const { store } = makeStore();
  const deps = dependencies('shared', 12, 60_000);
  const depBytes = Object.values(deps).reduce((s, b) => s + b.length, 0);
  const n = 20;
  for (let i = 0; i < n; i++) {
    // Each function has its own handler, and half of them one extra dependency of their own.
    const own = i % 2 === 0 ? { [`node_modules/own${i}/index.js`]: pseudo(`own-${i}`, 30_000) } : {};
    await store.putTree(`code/f${i}`, 'code', writeTree(tempDir(), { 'index.js': `exports.handler = async () => ${i};`, ...deps, ...own }));
  }
  const s = await store.stats();
  assert.ok(s.logicalBytes > n * depBytes);
  // One copy of the shared tree, ten small own dependencies, twenty handlers, plus per-chunk sealing overhead.
  const oneCopy = depBytes + 10 * 30_000 + n * 64;
  assert.ok(s.storedBytes < oneCopy * 1.05, `storedBytes ${s.storedBytes} vs one copy ${oneCopy}`);
  assert.ok(s.dedupRatio > 10, `dedup ratio ${s.dedupRatio}`);
});
