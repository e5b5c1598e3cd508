import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DirTier } from '../../src/store/dir-tier.js';
import { LinkTier } from '../../src/store/link-tier.js';
import { MemoryTier } from '../../src/store/memory-tier.js';
import { S3Tier } from '../../src/store/s3-tier.js';
import { tierConformance } from './tier-conformance.js';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'thaw-tier-'));

tierConformance('memory', () => Promise.resolve(new MemoryTier(64 * 1024 * 1024)));
tierConformance('disk cache', () => Promise.resolve(new DirTier(tmp(), { name: 'disk', maxBytes: 64 * 1024 * 1024 })));
tierConformance('origin directory', () => Promise.resolve(new DirTier(tmp(), { name: 'origin', durable: true })));
tierConformance('origin behind a modelled link', () => Promise.resolve(new LinkTier(new DirTier(tmp(), { durable: true }), { latencyMs: 1, bytesPerSecond: 1e9 })));
tierConformance('s3', () => {
  const endpoint = process.env.THAW_TEST_S3_ENDPOINT;
  const bucket = process.env.THAW_TEST_S3_BUCKET;
  if (endpoint === undefined || bucket === undefined) {
    return Promise.resolve({ skip: 'no local S3-compatible endpoint: set THAW_TEST_S3_ENDPOINT and THAW_TEST_S3_BUCKET (and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) to run it' });
  }
  return Promise.resolve(new S3Tier({ endpoint, bucket, prefix: `conformance-${randomBytes(4).toString('hex')}/` }));
});

const id = (): string => randomBytes(32).toString('hex');

test('memory tier evicts the least recently used beyond its cap', async () => {
  const t = new MemoryTier(3000);
  const [a, b, c, d] = [id(), id(), id(), id()];
  await t.put(a, Buffer.alloc(1000));
  await t.put(b, Buffer.alloc(1000));
  await t.put(c, Buffer.alloc(1000));
  await t.get(a);
  await t.put(d, Buffer.alloc(1000));
  assert.equal(await t.has(b), false, 'b was least recently used');
  assert.equal(await t.has(a), true);
  assert.ok(t.size <= 3000);
});

test('disk cache keeps its size under the cap, evicting least recently used', async () => {
  const dir = tmp();
  const t = new DirTier(dir, { maxBytes: 3000 });
  const ids = [id(), id(), id()];
  for (const k of ids) await t.put(k, Buffer.alloc(1000));
  await t.get(ids[0] as string);
  await t.put(id(), Buffer.alloc(1000));
  assert.equal(await t.has(ids[1] as string), false);
  assert.equal(await t.has(ids[0] as string), true);
  let total = 0;
  for await (const c of t.list()) total += c.size;
  assert.ok(total <= 3000);
  // A new instance over the same directory learns what is there.
  const again = new DirTier(dir, { maxBytes: 2000 });
  await again.put(id(), Buffer.alloc(1000));
  let n = 0;
  for await (const _c of again.list()) n++;
  assert.equal(n, 2);
  assert.ok(readdirSync(dir).every((d) => /^[0-9a-f]{2}$/.test(d)));
});
