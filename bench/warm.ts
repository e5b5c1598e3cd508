/**
 * Warm invoke through the HTTP API with a keep-alive client: latency (p50, p99) of sequential invokes, and
 * throughput (invokes/s) with several concurrent clients. Writes bench/results/warm.json.
 *   npm run bench:warm [-- --n 3000 --concurrency 4 --seconds 5]
 */
import { parseArgs } from 'node:util';
import { preparedFixture, send, signV4, summarise, writeResults, ms, type Scenario } from './lib.js';
import { createFromDir, startBenchServer } from './server.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '4' }, seconds: { type: 'string', default: '5' } } });
const N = Number(values.n);
const C = Number(values.concurrency);
const SECONDS = Number(values.seconds);

const s = await startBenchServer();
try {
  await createFromDir(s, 'hello', preparedFixture('hello'), { MemorySize: 128 });
  const url = new URL('/2015-03-31/functions/hello/invocations', s.url);
  const body = Buffer.from('{"bench":true}');
  const headers = signV4('POST', url, body);
  const once = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const r = await send(s.agent, 'POST', url, body, headers);
    if (r.status !== 200) throw new Error(`invoke: ${r.status} ${r.body.toString()}`);
    return ms(t0);
  };
  for (let i = 0; i < 300; i++) await once();
  const lat: number[] = [];
  for (let i = 0; i < N; i++) lat.push(await once());
  const scenarios: Scenario[] = [summarise('warm-invoke-sequential', 'ms', lat)];

  let count = 0;
  const conc: number[] = [];
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: C }, async () => {
    while (Date.now() < end) {
      conc.push(await once());
      count++;
    }
  }));
  scenarios.push(summarise(`warm-invoke-concurrency-${C}`, 'ms', conc, { invokesPerSecond: Math.round(count / SECONDS) }));
  const seqRate = Math.round(1000 / (lat.reduce((a, b) => a + b, 0) / lat.length));
  scenarios[0] = { ...scenarios[0] as Scenario, invokesPerSecond: seqRate };
  const file = writeResults('warm.json', scenarios, { machine: '2 shared cores' });
  for (const sc of scenarios) process.stdout.write(`${sc.name}: p50 ${sc.p50} ms, p99 ${sc.p99} ms, ${String(sc.invokesPerSecond)} invokes/s (${sc.samples} samples)\n`);
  process.stdout.write(`wrote ${file}\n`);
} finally {
  await s.stop();
}
