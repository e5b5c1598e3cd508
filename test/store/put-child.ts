/**
 * A process that puts an artifact and is killed -9 part way (by crash.test.ts). Arguments: data directory,
 * source tree. It commits "code/before" first, then puts "code/during" through an origin that announces each
 * chunk it has made durable, so the parent can kill it between chunk writes and the manifest commit.
 */
import { join } from 'node:path';
import { openDb } from '../../src/control/db.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { DirTier } from '../../src/store/dir-tier.js';
import { MemoryTier } from '../../src/store/memory-tier.js';
import { Sealer, loadSecret } from '../../src/store/seal.js';
import { Store } from '../../src/store/store.js';
import type { ChunkTier } from '../../src/store/tier.js';

const [dataDir, before, during] = process.argv.slice(2) as [string, string, string];
const db = openDb(join(dataDir, 'thaw.db'));
const dir = new DirTier(join(dataDir, 'store'), { name: 'origin', durable: true });
const announcing: ChunkTier = {
  name: 'origin',
  get: (id) => dir.get(id),
  has: (id) => dir.has(id),
  delete: (id) => dir.delete(id),
  list: () => dir.list(),
  put: async (id, data) => {
    await dir.put(id, data);
    process.stdout.write(`durable ${id}\n`);
    // Slow enough that the parent's kill lands in the middle of the put.
    await new Promise((r) => setTimeout(r, 30));
  },
};
const store = new Store(new ChunkStore(new Sealer(loadSecret(join(dataDir, 'store.key'))), [new MemoryTier(1 << 20), announcing]), db);
await store.putTree('code/before', 'code', before);
process.stdout.write('committed before\n');
await store.putTree('code/during', 'code', during);
process.stdout.write('committed during\n');
