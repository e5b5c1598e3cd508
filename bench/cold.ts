/**
 * Cold starts per benchmark fixture through the HTTP API (request in to response out), side by side in one run:
 *   plain       a runtime booted per environment (server started with --no-stem-cells --no-code-cache)
 *   stem        a pre-started runtime specialised on demand, with the post-init code cache (the default)
 *   snapstart   a published version with SnapStart: restored from its V8 startup snapshot, or started from a
 *               stem cell when that measured faster for this version (startPaths shows which)
 *   node        baseline (a): a plain `node` process per request running the same handler, no sandbox
 *   peer-workerd  baseline (b): Cloudflare's workerd, a fresh process per request (see bench/peer-workerd.ts)
 * Each sample drains the function's idle environments first. Samples of the three paths are interleaved so
 * that the machine's noise falls on all of them alike. Writes bench/results/cold.json.
 *   npm run bench:cold [-- --samples 20 --fixtures hello,realistic,compute-init,extreme]
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, api, preparedFixture, send, signV4, summarise, writeResults, ms, type Scenario } from './lib.js';
import { createFromDir, startBenchServer, type BenchServer } from './server.js';
import { nodeRuntimeDir } from '../src/worker/runtimes.js';
import { WORKERD_VERSION, tryPrepareWorkerdFixture, workerdCold } from './peer-workerd.js';

const { values } = parseArgs({ options: { samples: { type: 'string', default: '20' }, fixtures: { type: 'string', default: 'hello,realistic,compute-init,extreme' }, pause: { type: 'string', default: '400' } } });
const SAMPLES = Number(values.samples);
const PAUSE = Number(values.pause);
const fixtures = (values.fixtures ?? '').split(',').filter((f) => f !== '');
const NODE = join(nodeRuntimeDir(24), 'bin', 'node');

interface Sample { latency: number; init?: number; memory?: number; path?: string }

async function coldInvoke(s: BenchServer, fx: string, qualifier?: string): Promise<Sample> {
  const q = qualifier === undefined ? '' : `?Qualifier=${qualifier}`;
  await api(s.agent, s.url, 'POST', `/thaw/v1/functions/${fx}/drain${q}`);
  const url = new URL(`/2015-03-31/functions/${fx}/invocations${q}`, s.url);
  const body = Buffer.from('{}');
  // No LogType=Tail: like most callers, the request is answered as soon as the function has responded. The
  // REPORT line (Init/Restore Duration, memory, start path) is read from the log afterwards, outside the timing.
  const headers = signV4('POST', url, body);
  const t0 = process.hrtime.bigint();
  const r = await send(s.agent, 'POST', url, body, headers);
  const latency = ms(t0);
  if (r.status !== 200 || r.headers['x-amz-function-error'] !== undefined) throw new Error(`${fx}: ${r.status} ${r.body.toString()}`);
  const requestId = String(r.headers['x-amzn-requestid'] ?? '');
  let log = '';
  for (let i = 0; i < 200 && !log.includes('REPORT RequestId'); i++) {
    if (i > 0) await new Promise((res) => setTimeout(res, 10));
    const l = await api(s.agent, s.url, 'GET', `/thaw/v1/functions/${fx}/logs?requestId=${requestId}&limit=100`);
    log = (JSON.parse(l.body.toString()) as { events: { message: string }[] }).events.map((e) => e.message).join('\n');
  }
  const init = /(?:Init|Restore) Duration: ([\d.]+) ms/.exec(log);
  if (init === null) throw new Error(`${fx}: not a cold start:\n${log}`);
  const mem = /Max Memory Used: (\d+) MB/.exec(log);
  const path = /Start Path: (\S+)/.exec(log);
  return { latency, init: Number(init[1]), ...(mem === null ? {} : { memory: Number(mem[1]) }), ...(path === null ? {} : { path: path[1] as string }) };
}

function plainNode(dir: string): Promise<Sample> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn(NODE, [join(ROOT, 'bench', 'plain-node.cjs'), dir, 'index.handler', '{}'], { env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.once('exit', (code) => (code === 0 && out.length > 0 ? resolve({ latency: ms(t0) }) : reject(new Error(`plain node exited ${code}`))));
  });
}

const median = (xs: number[]): number | undefined => (xs.length === 0 ? undefined : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);

const plain = await startBenchServer(['--no-stem-cells', '--no-code-cache']);
const fast = await startBenchServer();
const scenarios: Scenario[] = [];
const peerSkipped: Record<string, string> = {};
try {
  for (const fx of fixtures) {
    const dir = preparedFixture(fx);
    await createFromDir(plain, fx, dir);
    await createFromDir(fast, fx, dir, { SnapStart: { ApplyOn: 'PublishedVersions' } });
    const t0 = process.hrtime.bigint();
    await api(fast.agent, fast.url, 'POST', `/2015-03-31/functions/${fx}/versions`, {});
    let state = 'Pending';
    while (state === 'Pending') {
      await new Promise((r) => setTimeout(r, 100));
      state = (JSON.parse((await api(fast.agent, fast.url, 'GET', `/2015-03-31/functions/${fx}/configuration?Qualifier=1`)).body.toString()) as { State: string }).State;
    }
    if (state !== 'Active') throw new Error(`${fx}: snapshot ${state}`);
    const snapshotBuildMs = ms(t0);
    // One warm-up cold start each: after it, the fast path's trusted step makes the version's code cache.
    await coldInvoke(plain, fx);
    await coldInvoke(fast, fx);
    await coldInvoke(fast, fx, '1');
    await plainNode(dir);
    const peer = await tryPrepareWorkerdFixture(fx, dir); // includes one warm-up cold start
    if ('skip' in peer) peerSkipped[`cold-peer-workerd-${fx}`] = peer.skip;
    const results: Record<'plain' | 'stem' | 'snapstart' | 'node' | 'peer-workerd', Sample[]> = { plain: [], stem: [], snapstart: [], node: [], 'peer-workerd': [] };
    for (let i = 0; i < SAMPLES; i++) {
      await new Promise((r) => setTimeout(r, PAUSE));
      results.plain.push(await coldInvoke(plain, fx));
      results.stem.push(await coldInvoke(fast, fx));
      results.snapstart.push(await coldInvoke(fast, fx, '1'));
      results.node.push(await plainNode(dir));
      if (!('skip' in peer)) results['peer-workerd'].push(await workerdCold(peer));
    }
    const nodeP50 = median(results.node.map((s) => s.latency)) as number;
    for (const [path, samples] of Object.entries(results)) {
      if (samples.length === 0) continue;
      const lat = samples.map((s) => s.latency);
      const p50 = median(lat) as number;
      const paths: Record<string, number> = {};
      for (const s of samples) if (s.path !== undefined) paths[s.path] = (paths[s.path] ?? 0) + 1;
      scenarios.push(summarise(`cold-${path}-${fx}`, 'ms', lat, {
        fixture: fx,
        path,
        ratioToPlainNodeP50: Math.round((p50 / nodeP50) * 1000) / 1000,
        ...(path === 'snapstart' ? { snapshotBuildMs: Math.round(snapshotBuildMs) } : {}),
        ...(path === 'peer-workerd' ? { peer: 'workerd', peerVersion: WORKERD_VERSION, cold: 'fresh workerd process per request: spawn to HTTP response' } : {}),
        ...(path === 'node' || path.startsWith('peer-') ? {} : {
          initDurationP50: median(samples.map((s) => s.init ?? 0)),
          maxMemoryUsedMbP50: median(samples.flatMap((s) => (s.memory === undefined ? [] : [s.memory]))),
          startPaths: paths,
        }),
      }));
      const sc = scenarios.at(-1) as Scenario;
      process.stdout.write(`${fx.padEnd(13)} ${path.padEnd(6)} p50 ${String(sc.p50).padStart(9)} ms  p99 ${String(sc.p99).padStart(9)} ms  ratio to node ${String(sc.ratioToPlainNodeP50).padStart(6)}  ${JSON.stringify(paths)}\n`);
    }
  }
  process.stdout.write(`wrote ${writeResults('cold.json', scenarios, { machine: '2 shared cores', samplesPerPath: SAMPLES, peerSkipped })}\n`);
} finally {
  await plain.stop();
  await fast.stop();
}
