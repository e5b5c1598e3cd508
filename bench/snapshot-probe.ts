/**
 * Not a test: SnapStart for Node, measured module by module (no HTTP API in the way). For each fixture, with
 * the pinned Node 24:
 *
 * - plain:    `node bootstrap.cjs` spawned to its first GET /runtime/invocation/next (Init included), and to
 *             the first invocation's response;
 * - snapshot: build time and blob size, then a process restored from the blob spawned to its first /next
 *             (restore/next and afterRestore hooks included) and to the first response. Variants: Node's
 *             default (with V8 code cache), minified bundle, without code cache, both.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/snapshot-probe.js [runs=10] [fixture...]
 *
 * Prints a table and writes bench/results/snapshot-probe.json (one scenario per line of the table).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RuntimeApiServer } from '../src/sandbox/runtime-api.js';
import { buildSnapshot } from '../src/snapshot/builder.js';
import { restoreArgv } from '../src/snapshot/restore.js';
import { NODES, ROOT, RestorePort, installedFixture, lambdaEnv, spawnRuntime, tempDir, waitFor } from '../test/snapshot/helpers.js';
import { summarise, writeResults, type Scenario } from './lib.js';

const runs = Number(process.argv[2] ?? 10);
const only = process.argv.slice(3);
const FIXTURES = ['hello', 'realistic', 'compute-init', 'extreme'].filter((f) => only.length === 0 || only.includes(f));
const NODE = NODES.node24;
const BOOTSTRAP = path.join(ROOT, 'src', 'runtimes', 'node', 'bootstrap.cjs');

const server = new RuntimeApiServer();
let envs = 0;

/** Spawn argv(socket); time to the first /next and to the first response. Two warm-up runs first. */
async function startTimes(argv: (socket: string) => string[], codeDir: string): Promise<{ next: number[]; response: number[] }> {
  const next: number[] = [];
  const response: number[] = [];
  const dir = await tempDir('probe');
  for (let i = 0; i < runs + 2; i++) {
    const port = new RestorePort();
    const id = `probe-${++envs}`;
    const socket = path.join(dir, `${id}.sock`);
    await server.attach(id, port, { transport: 'unix', socketPath: socket });
    const first = waitFor(port, 'next', 60_000);
    const t0 = performance.now();
    const proc = spawnRuntime(argv(socket), lambdaEnv('index.handler', codeDir, { AWS_LAMBDA_INITIALIZATION_TYPE: 'snap-start' }), codeDir);
    try {
      await first;
      const tNext = performance.now() - t0;
      const out = await port.invoke({});
      const tResponse = performance.now() - t0;
      if (out.kind !== 'response') throw new Error(`invocation failed: ${out.report.body.toString()}`);
      if (i >= 2) {
        next.push(tNext);
        response.push(tResponse);
      }
    } catch (err) {
      throw new Error(`${String(err)}\nstdout: ${proc.stdout()}\nstderr: ${proc.stderr()}`);
    } finally {
      await proc.stop();
      await server.detach(id);
    }
  }
  return { next, response };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
};

async function main(): Promise<void> {
  const scenarios: Scenario[] = [];
  const rows: string[][] = [['fixture', 'variant', 'build ms', 'blob MB', 'to /next p50', 'to response p50']];
  for (const fixture of FIXTURES) {
    const codeDir = installedFixture(fixture);
    const plain = await startTimes((s) => [NODE, BOOTSTRAP, '--runtime-api-socket', s], codeDir);
    scenarios.push(summarise(`${fixture} plain bootstrap.cjs to first /next`, 'ms', plain.next));
    scenarios.push(summarise(`${fixture} plain bootstrap.cjs to first response`, 'ms', plain.response));
    rows.push([fixture, 'plain start', '', '', median(plain.next).toFixed(1), median(plain.response).toFixed(1)]);

    for (const v of [
      { name: 'snapshot', minify: false as boolean | 'whitespace', codeCache: true },
      { name: 'snapshot, minified', minify: true, codeCache: true },
      { name: 'snapshot, whitespace-minified', minify: 'whitespace' as const, codeCache: true },
      { name: 'snapshot, no code cache', minify: false, codeCache: false },
      { name: 'snapshot, minified, no code cache', minify: true, codeCache: false },
    ]) {
      const outDir = path.join(await tempDir(`probe-${fixture}`), 'snap');
      const built = await buildSnapshot({
        codeDir,
        handler: 'index.handler',
        nodeBinary: NODE,
        runtimeId: 'nodejs24.x',
        env: lambdaEnv('index.handler', codeDir),
        outDir,
        timeoutMs: 600_000,
        minify: v.minify,
        codeCache: v.codeCache,
      });
      const times = await startTimes((s) => restoreArgv({ nodeBinary: NODE, blobPath: built.blobPath, flags: built.flags, runtimeApiSocket: s }), codeDir);
      const extra = { buildMs: Math.round(built.buildMs), initMsInBuild: Math.round(built.initMs), blobBytes: built.sizeBytes, bundleBytes: built.bundle.sizeBytes };
      scenarios.push(summarise(`${fixture} ${v.name}: restore to first /next`, 'ms', times.next, extra));
      scenarios.push(summarise(`${fixture} ${v.name}: restore to first response`, 'ms', times.response, extra));
      rows.push([fixture, v.name, String(Math.round(built.buildMs)), (built.sizeBytes / 1e6).toFixed(1), median(times.next).toFixed(1), median(times.response).toFixed(1)]);
    }
  }
  await server.close();
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}\n`);
  const file = writeResults('snapshot-probe.json', scenarios, { runs, runtime: NODE });
  process.stdout.write(`results: ${file}\n`);
}

await main();
