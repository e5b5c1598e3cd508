/**
 * Not a test: measures the time from spawning a runtime bootstrap (trivial handler, clean environment) to
 * its first GET /runtime/invocation/next. Belongs in bench/ once that exists for runtimes.
 *
 *   node dist/test/runtimes/measure-start.js [runs]
 *
 * Prints one JSON object per scenario: { name, unit, samples, p50, p99 }.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RuntimeApiServer } from '../src/sandbox/runtime-api.js';
import { NODE_BOOTSTRAP, NODES, PYTHON, PYTHON_BOOTSTRAP, TestPort, lambdaEnv, spawnRuntime, waitFor, writeFiles } from '../test/runtimes/helpers.js';

const runs = Number(process.argv[2] ?? 20);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function report(name: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x * 100) / 100;
  process.stdout.write(
    JSON.stringify({ name, unit: 'ms', samples: samples.map(round), p50: round(quantile(sorted, 0.5)), p99: round(quantile(sorted, 0.99)) }) + '\n',
  );
}

async function bare(node: string): Promise<number> {
  const t0 = performance.now();
  await new Promise((resolve) => spawn(node, ['-e', '0'], { env: { PATH: '/usr/bin:/bin' }, stdio: 'ignore' }).once('close', resolve));
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'thaw-measure-'));
  await writeFiles(dir, {
    'index.js': `exports.handler = async (event) => ({ ok: true });\n`,
    'app.py': `def handler(event, context):\n    return {"ok": True}\n`,
  });
  const server = new RuntimeApiServer();
  let n = 0;
  const scenario = async (name: string, argv: (socket: string) => string[], handler: string, transport: 'tcp' | 'unix'): Promise<void> => {
    const samples: number[] = [];
    for (let i = 0; i < runs + 2; i++) {
      const port = new TestPort();
      const id = `m-${++n}`;
      const socket = path.join(dir, `${id}.sock`);
      const { address } = await server.attach(id, port, transport === 'tcp' ? { transport } : { transport, socketPath: socket });
      const first = waitFor(port, 'next', 10_000);
      const t0 = performance.now();
      const proc = spawnRuntime(argv(socket), lambdaEnv(handler, dir, transport === 'tcp' ? address : undefined), dir);
      await first;
      const dt = performance.now() - t0;
      if (i >= 2) samples.push(dt); // two warm-up runs (page cache)
      await proc.stop();
      await server.detach(id);
    }
    report(name, samples);
  };
  for (const [name, node] of Object.entries(NODES)) {
    const samples: number[] = [];
    for (let i = 0; i < runs; i++) samples.push(await bare(node));
    report(`${name} -e 0 (spawn to exit, reference)`, samples);
    await scenario(`${name} bootstrap.cjs to first /next (tcp)`, () => [node, NODE_BOOTSTRAP], 'index.handler', 'tcp');
    await scenario(`${name} bootstrap.cjs to first /next (unix)`, (s) => [node, NODE_BOOTSTRAP, '--runtime-api-socket', s], 'index.handler', 'unix');
  }
  await scenario('python3 bootstrap.py to first /next (tcp)', () => [PYTHON, PYTHON_BOOTSTRAP], 'app.handler', 'tcp');
  await server.close();
  await rm(dir, { recursive: true, force: true });
}

await main();
