/**
 * The chunk store under a cold start, and its dedup. Writes bench/results/store.json.
 *
 *   cold-*   a cold start on a worker whose local cache is empty (fresh memory tier and disk cache), with the
 *            origin behind a modelled remote link (LinkTier: 5 ms per request, 200 MB/s): materialise the
 *            realistic fixture's code tree (node_modules included) and a snapshot-sized blob from the store,
 *            then run the handler's Init in a real `node` process. Without a trace each chunk is fetched when
 *            the materialiser needs it; with the trace recorded by the first cold start, the chunks are
 *            prefetched in recorded order, 8 at a time, while the materialiser consumes them as they arrive.
 *            cold-local-origin is the same with the origin a local directory (no link), for reference.
 *   dedup    N functions sharing the fixture's node_modules, each with its own handler: logical vs stored bytes.
 *
 *   npm run bench:store [-- --samples 10 --functions 20 --blob-mb 20]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { preparedFixture, summarise, writeResults, type Scenario } from './lib.js';
import { openDb } from '../src/control/db.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { DirTier } from '../src/store/dir-tier.js';
import { LinkTier } from '../src/store/link-tier.js';
import { MemoryTier } from '../src/store/memory-tier.js';
import { Sealer } from '../src/store/seal.js';
import { Store } from '../src/store/store.js';
import { AccessTraces, type StartSubject } from '../src/store/traces.js';
import type { ChunkTier } from '../src/store/tier.js';
import { resetRuntimeDir, runtimeDirFor } from '../src/store/open.js';

const { values } = parseArgs({ options: { samples: { type: 'string', default: '10' }, functions: { type: 'string', default: '20' }, 'blob-mb': { type: 'string', default: '20' } } });
const SAMPLES = Number(values.samples);
const FUNCTIONS = Number(values.functions);
const BLOB_BYTES = Number(values['blob-mb']) * 1024 * 1024;
const LINK = { latencyMs: 5, bytesPerSecond: 200e6 };


const work = mkdtempSync(join(tmpdir(), 'thaw-bench-store-'));
const db = openDb(join(work, 'thaw.db'));
const sealer = new Sealer(createHash('sha256').update('bench deployment secret').digest());
const origin = new DirTier(join(work, 'store'), { name: 'origin', durable: true });
/** Where the server would materialise (a tmpfs when there is one). */
const RUNTIME = runtimeDirFor(work);
resetRuntimeDir(RUNTIME);

/** Incompressible bytes standing in for a snapshot blob (V8 heaps are not much more compressible). */
function blob(n: number): Buffer {
  const out = Buffer.alloc(n);
  let b = Buffer.from('blob');
  for (let at = 0; at < n; at += 32) {
    b = createHash('sha256').update(b).digest();
    b.copy(out, at);
  }
  return out;
}

function runInit(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', 'require(process.argv[1])', join(dir, 'index.js')], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`Init failed (${code}): ${err}`))));
  });
}

type Mode = 'cold-remote-no-trace' | 'cold-remote-trace' | 'cold-local-origin';

/** A worker with an empty local cache. */
function worker(mode: Mode): { store: Store; tiers: ChunkTier[] } {
  const cacheDir = mkdtempSync(join(work, 'cache-'));
  const tiers: ChunkTier[] = mode === 'cold-local-origin'
    ? [new MemoryTier(256 * 1024 * 1024), origin]
    : [new MemoryTier(256 * 1024 * 1024), new DirTier(cacheDir, { name: 'disk', maxBytes: 1 << 30 }), new LinkTier(origin, LINK)];
  return { store: new Store(new ChunkStore(sealer, tiers), db), tiers };
}

const subject: StartSubject = { key: 'bench:1:code', functionName: 'bench', version: '1', codeSha256: 'code' };

async function coldStart(mode: Mode, record = false): Promise<{ total: number; materialise: number }> {
  const { store } = worker(mode);
  const traces = new AccessTraces(store, { parallel: 8 });
  const useTrace = mode === 'cold-remote-trace' || record;
  if (useTrace) traces.begin(subject);
  const rt = join(RUNTIME, `start-${performance.now().toFixed(0)}`);
  const t0 = performance.now();
  await store.materialiseTree('code/realistic', join(rt, 'code'), useTrace ? traces.forCode('code') : {});
  await store.materialiseBlob('snapshot/bench/1', join(rt, 'snapshot.blob'), useTrace ? traces.forSnapshot('bench', '1') : {});
  const t1 = performance.now();
  await runInit(join(rt, 'code'));
  const t2 = performance.now();
  rmSync(rt, { recursive: true, force: true });
  await new Promise((r) => setImmediate(r));
  return { total: t2 - t0, materialise: t1 - t0 };
}

async function main(): Promise<void> {
  const fixture = preparedFixture('realistic');
  const seed = new Store(new ChunkStore(sealer, [origin]), db);
  const code = await seed.putTree('code/realistic', 'code', fixture);
  await seed.putBlob('snapshot/bench/1', 'snapshot', blob(BLOB_BYTES));
  process.stderr.write(`code tree ${(code.size / 1e6).toFixed(1)} MB in ${code.chunks.length} chunks, blob ${(BLOB_BYTES / 1e6).toFixed(1)} MB\n`);

  // The first cold start of the version records its trace.
  await coldStart('cold-remote-no-trace', true);
  const trace = seed.trace(subject.key);
  if (trace === undefined) throw new Error('no trace was recorded');

  const modes: Mode[] = ['cold-remote-no-trace', 'cold-remote-trace', 'cold-local-origin'];
  const totals = new Map<Mode, number[]>(modes.map((m) => [m, []]));
  const mats = new Map<Mode, number[]>(modes.map((m) => [m, []]));
  for (let i = 0; i < SAMPLES; i++) {
    for (const m of modes) {
      const r = await coldStart(m);
      totals.get(m)?.push(r.total);
      mats.get(m)?.push(r.materialise);
    }
    process.stderr.write('.');
  }
  process.stderr.write('\n');
  const scenarios: Scenario[] = [];
  for (const m of modes) {
    scenarios.push(summarise(`${m}`, 'ms', totals.get(m) ?? [], { what: 'materialise code tree + blob, then Init in node', traceChunks: trace.length }));
    scenarios.push(summarise(`${m}-materialise`, 'ms', mats.get(m) ?? [], { what: 'materialise code tree + blob only' }));
  }

  // Dedup: N functions sharing the fixture's dependencies, each with its own handler.
  const dd = mkdtempSync(join(work, 'dedup-'));
  const ddb = openDb(join(dd, 'thaw.db'));
  const dstore = new Store(new ChunkStore(sealer, [new DirTier(join(dd, 'store'), { durable: true })]), ddb);
  const src = join(dd, 'src');
  await cp(fixture, src, { recursive: true });
  const handler = readFileSync(join(fixture, 'index.js'), 'utf8');
  let oneCopy = 0;
  for (let i = 0; i < FUNCTIONS; i++) {
    await writeFile(join(src, 'index.js'), `${handler}\n// function ${i}\n`);
    await dstore.putTree(`code/f${i}`, 'code', src);
    if (i === 0) oneCopy = (await dstore.stats()).storedBytes;
  }
  const st = await dstore.stats();
  scenarios.push({
    name: 'dedup', unit: 'ratio', samples: 1, p50: Math.round(st.dedupRatio * 100) / 100, p99: Math.round(st.dedupRatio * 100) / 100,
    functions: FUNCTIONS, logicalBytes: st.logicalBytes, storedBytes: st.storedBytes, oneCopyStoredBytes: oneCopy,
    storedOverOneCopy: Math.round((st.storedBytes / oneCopy) * 1000) / 1000,
  });
  ddb.close();

  const out = writeResults('store.json', scenarios, { runtimeDir: RUNTIME, link: LINK, samples: SAMPLES, codeTreeBytes: code.size, codeChunks: code.chunks.length, blobBytes: BLOB_BYTES, prefetchParallel: 8 });
  for (const s of scenarios) process.stdout.write(`${s.name.padEnd(34)} p50 ${String(s.p50).padStart(9)} ${s.unit}  p99 ${s.p99}\n`);
  process.stdout.write(`dedup: ${FUNCTIONS} functions, logical ${(st.logicalBytes / 1e6).toFixed(1)} MB, stored ${(st.storedBytes / 1e6).toFixed(1)} MB (one copy ${(oneCopy / 1e6).toFixed(1)} MB)\n${out}\n`);
  db.close();
  rmSync(work, { recursive: true, force: true });
  rmSync(RUNTIME, { recursive: true, force: true });
}

await main();
