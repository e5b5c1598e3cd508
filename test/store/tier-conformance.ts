import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { ChunkTier } from '../../src/store/tier.js';

const id = (): string => randomBytes(32).toString('hex');

/**
 * What every ChunkTier must do. `make` gives a fresh, empty tier (or the reason it cannot be tested here).
 */
export function tierConformance(name: string, make: () => Promise<ChunkTier | { skip: string }>): void {
  const withTier = (title: string, fn: (t: ChunkTier) => Promise<void>): void => {
    test(`${name}: ${title}`, async (t) => {
      const tier = await make();
      if ('skip' in tier) {
        t.skip(tier.skip);
        return;
      }
      try {
        await fn(tier);
      } finally {
        await tier.close?.();
      }
    });
  };

  withTier('get of an absent chunk is undefined', async (tier) => {
    assert.equal(await tier.get(id()), undefined);
    assert.equal(await tier.has(id()), false);
  });

  withTier('put then get returns the same bytes', async (tier) => {
    const k = id();
    const data = randomBytes(100_000);
    await tier.put(k, data);
    assert.equal(await tier.has(k), true);
    assert.deepEqual(await tier.get(k), data);
  });

  withTier('put is idempotent and overwrites', async (tier) => {
    const k = id();
    await tier.put(k, Buffer.from('one'));
    await tier.put(k, Buffer.from('two'));
    assert.deepEqual(await tier.get(k), Buffer.from('two'));
  });

  withTier('a stored chunk is not changed by mutating the buffer given to put', async (tier) => {
    const k = id();
    const data = Buffer.from('immutable');
    await tier.put(k, data);
    data.fill(0);
    assert.deepEqual(await tier.get(k), Buffer.from('immutable'));
  });

  withTier('delete removes, and deleting an absent chunk is fine', async (tier) => {
    const k = id();
    await tier.put(k, Buffer.from('x'));
    await tier.delete(k);
    assert.equal(await tier.get(k), undefined);
    assert.equal(await tier.has(k), false);
    await tier.delete(id());
  });

  withTier('list reports every chunk with its size', async (tier) => {
    const want = new Map<string, number>();
    for (let i = 0; i < 5; i++) {
      const k = id();
      const n = 10 + i * 7;
      await tier.put(k, randomBytes(n));
      want.set(k, n);
    }
    const got = new Map<string, number>();
    for await (const c of tier.list()) {
      got.set(c.id, c.size);
      assert.ok(c.mtimeMs > 0);
    }
    for (const [k, n] of want) assert.equal(got.get(k), n, `chunk ${k} listed with its size`);
  });

  withTier('an invalid id is refused on put and absent on get', async (tier) => {
    await assert.rejects(tier.put('../../etc/passwd', Buffer.from('x')));
    assert.equal(await tier.get('../../etc/passwd'), undefined);
  });

  withTier('concurrent puts and gets of many chunks', async (tier) => {
    const items = Array.from({ length: 40 }, () => ({ k: id(), d: randomBytes(4096) }));
    await Promise.all(items.map((i) => tier.put(i.k, i.d)));
    const back = await Promise.all(items.map((i) => tier.get(i.k)));
    back.forEach((b, n) => assert.deepEqual(b, items[n]?.d));
  });
}
