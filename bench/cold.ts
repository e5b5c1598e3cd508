/**
 * Plain cold starts per benchmark fixture, through the HTTP API: each sample drains the function's idle
 * environments and invokes once (request in to response out), recording the client latency, the Init Duration
 * and Max Memory Used from the REPORT line. Writes bench/results/cold.json.
 *   npm run bench:cold [-- --samples 20 --fixtures hello,realistic,compute-init,extreme]
 */
import { parseArgs } from 'node:util';
import { api, preparedFixture, send, signV4, summarise, writeResults, ms, type Scenario } from './lib.js';
import { createFromDir, startBenchServer } from './server.js';

const { values } = parseArgs({ options: { samples: { type: 'string', default: '20' }, fixtures: { type: 'string', default: 'hello,realistic,compute-init,extreme' } } });
const SAMPLES = Number(values.samples);
const fixtures = (values.fixtures ?? '').split(',').filter((f) => f !== '');

const s = await startBenchServer();
const scenarios: Scenario[] = [];
try {
  for (const fx of fixtures) {
    await createFromDir(s, fx, preparedFixture(fx));
    const url = new URL(`/2015-03-31/functions/${fx}/invocations`, s.url);
    const body = Buffer.from('{}');
    const headers = signV4('POST', url, body, { 'x-amz-log-type': 'Tail' });
    const latency: number[] = [];
    const init: number[] = [];
    const memory: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      await api(s.agent, s.url, 'POST', `/thaw/v1/functions/${fx}/drain`);
      const t0 = process.hrtime.bigint();
      const r = await send(s.agent, 'POST', url, body, headers);
      const elapsed = ms(t0);
      if (r.status !== 200 || r.headers['x-amz-function-error'] !== undefined) throw new Error(`${fx}: ${r.status} ${r.body.toString()}`);
      const log = Buffer.from(String(r.headers['x-amz-log-result'] ?? ''), 'base64').toString();
      const initMs = /Init Duration: ([\d.]+) ms/.exec(log);
      const mem = /Max Memory Used: (\d+) MB/.exec(log);
      if (initMs === null) throw new Error(`${fx}: sample ${i} was not a cold start:\n${log}`);
      latency.push(elapsed);
      init.push(Number(initMs[1]));
      if (mem !== null) memory.push(Number(mem[1]));
    }
    const medianMem = [...memory].sort((a, b) => a - b)[Math.floor(memory.length / 2)];
    scenarios.push(summarise(`cold-plain-${fx}`, 'ms', latency, { path: 'plain', maxMemoryUsedMbP50: medianMem }));
    scenarios.push(summarise(`cold-plain-${fx}-init-duration`, 'ms', init, { path: 'plain' }));
    process.stdout.write(`${fx}: cold invoke p50 ${scenarios.at(-2)?.p50} ms p99 ${scenarios.at(-2)?.p99} ms; Init Duration p50 ${scenarios.at(-1)?.p50} ms; memory p50 ${String(medianMem)} MB\n`);
  }
  process.stdout.write(`wrote ${writeResults('cold.json', scenarios, { machine: '2 shared cores', samplesPerFixture: SAMPLES })}\n`);
} finally {
  await s.stop();
}
