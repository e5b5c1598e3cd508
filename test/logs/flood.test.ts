/**
 * A function that floods its stdout and stderr must not slow other functions, grow the server's memory or its
 * database without bound, evict other functions' logs, or break LogType=Tail.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, DeleteFunctionCommand, InvokeCommand, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { ROLE, decode, signedHeaders, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { openDb } from '../../src/control/db.js';
import { LogStore } from '../../src/logs/store.js';

/** Writes `mb` MB of 1 KB lines to stdout and `errMb` to stderr, one line over 256 KB first. */
const FLOODER = `
const { once } = require('node:events');
const put = async (s, data) => { if (!s.write(data)) await once(s, 'drain'); };
exports.handler = async (event) => {
  const block = ('x'.repeat(1023) + '\\n').repeat(1024);
  await put(process.stdout, 'y'.repeat(300 * 1024) + '\\n');
  for (let i = 0; i < event.mb; i++) await put(process.stdout, block);
  for (let i = 0; i < event.errMb; i++) await put(process.stderr, block);
  return 'flooded';
};`;
const VICTIM = `exports.handler = async (event) => { console.log('victim line ' + event.i); return event.i; };`;

interface Line { seq: number; requestId: string | null; message: string }

async function logsOf(s: RunningServer, name: string, query: string): Promise<Line[]> {
  const url = new URL(`/thaw/v1/functions/${name}/logs?${query}`, s.url);
  const res = await fetch(url, { headers: await signedHeaders(url) });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { events: Line[] }).events;
}

const rssMb = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
};
/** CPU seconds the process has used (user + system). */
const cpuSeconds = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
};
const sizeOf = (file: string): number => statSync(file, { throwIfNoEntry: false })?.size ?? 0;
const dbBytes = (dir: string, name: string): number => sizeOf(join(dir, name)) + sizeOf(join(dir, `${name}-wal`));

describe('log flood', () => {
  let s: RunningServer;

  before(async () => {
    // 1 MiB/s and 64 MiB per function: everything the flood may store is kept, so the test can look for all of it.
    s = await startServer({ args: ['--log-rate', '1', '--log-retention', '64'] });
    for (const [name, code] of [['flooder', FLOODER], ['victim', VICTIM]] as const) {
      await s.client.send(new CreateFunctionCommand({
        FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Timeout: 120, MemorySize: 256,
        Code: { ZipFile: await zipFiles({ 'index.js': code }) },
      }));
    }
  });
  after(async () => {
    await s.stop();
  });

  test('a function writing hundreds of MB to stdout and stderr stalls no neighbour, keeps memory and storage bounded, and Tail stays 4 KB', async (t) => {
    const pid = s.proc.pid as number;
    const victim = async (i: number): Promise<number> => {
      const t0 = performance.now();
      const r = await s.client.send(new InvokeCommand({ FunctionName: 'victim', Payload: Buffer.from(JSON.stringify({ i })) }));
      assert.equal(r.FunctionError, undefined);
      assert.equal(decode(r.Payload), i);
      return performance.now() - t0;
    };
    // Warm both, and take the baseline after a first small flood has started everything the flood path uses.
    await victim(0);
    await s.client.send(new InvokeCommand({ FunctionName: 'flooder', Payload: Buffer.from(JSON.stringify({ mb: 1, errMb: 0 })) }));
    const baseline = rssMb(pid);
    const cpu0 = cpuSeconds(pid);
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, rssMb(pid)); }, 100);

    const floods = [1, 2].map(() => s.client.send(new InvokeCommand({
      FunctionName: 'flooder', LogType: 'Tail', Payload: Buffer.from(JSON.stringify({ mb: 150, errMb: 50 })),
    })));
    let flooding = true;
    const settled = Promise.allSettled(floods).finally(() => { flooding = false; });
    const latencies: number[] = [];
    let i = 1;
    // The neighbour keeps being invoked for as long as the flood lasts (and at least 20 times).
    while (flooding || i <= 20) latencies.push(await victim(i++));
    const results = await settled;
    clearInterval(sampler);
    peak = Math.max(peak, rssMb(pid));
    const victims = i - 1;
    t.diagnostic(`server CPU during the flood (400 MB of output, ${latencies.length} neighbour invokes): ${(cpuSeconds(pid) - cpu0).toFixed(2)} s`);
    t.diagnostic(`victim invokes: ${latencies.length}, max ${Math.max(...latencies).toFixed(0)} ms; server RSS ${baseline.toFixed(0)} -> peak ${peak.toFixed(0)} MB`);

    assert.ok(Math.max(...latencies) < 5000, `a neighbour invoke took ${Math.max(...latencies).toFixed(0)} ms`);
    assert.ok(peak - baseline < 200, `server RSS grew ${(peak - baseline).toFixed(0)} MB (${baseline.toFixed(0)} -> ${peak.toFixed(0)})`);
    for (const r of results) {
      assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '');
      const out = (r as PromiseFulfilledResult<InvokeCommandOutput>).value;
      assert.equal(out.StatusCode, 200);
      assert.equal(out.FunctionError, undefined);
      assert.equal(decode(out.Payload), 'flooded');
      const tail = Buffer.from(out.LogResult ?? '', 'base64');
      assert.ok(tail.length > 0 && tail.length <= 4096, `tail of ${tail.length} bytes`);
      assert.match(tail.toString(), /END RequestId: .*\nREPORT RequestId: /);
    }

    // Every line of the neighbour is still there, START, END and REPORT of every flood invocation too.
    const victimLines = await logsOf(s, 'victim', 'since=0&limit=10000');
    for (let k = 0; k <= victims; k++) assert.ok(victimLines.some((l) => l.message.endsWith(`victim line ${k}`)), `victim line ${k} is missing`);
    const floodIds = results.map((r) => (r as PromiseFulfilledResult<InvokeCommandOutput>).value.$metadata.requestId as string);
    // Paging after the last line seen (as `thaw logs --follow` does) walks all of the flooder's stored lines.
    const all: Line[] = [];
    for (let after = 0; ;) {
      const page = await logsOf(s, 'flooder', `afterSeq=${after}&limit=10000`);
      if (page.length === 0) break;
      all.push(...page);
      after = page.at(-1)?.seq ?? after;
    }
    assert.ok(all.every((l) => Buffer.byteLength(l.message) <= 256 * 1024), 'no line over 256 KB');
    assert.ok(all.some((l) => l.message.endsWith('[thaw: line cut at 256 KB]')), 'the long line was cut with a marker');
    for (const id of floodIds) {
      const mine = all.filter((l) => l.requestId === id).map((l) => l.message);
      const has = (re: RegExp): boolean => mine.some((m) => re.test(m));
      assert.ok(has(new RegExp(`^START RequestId: ${id}`)), `START of ${id}`);
      assert.ok(has(new RegExp(`^END RequestId: ${id}`)), `END of ${id}`);
      assert.ok(has(new RegExp(`^REPORT RequestId: ${id}`)), `REPORT of ${id}`);
      assert.ok(has(/^\[thaw\] log output dropped from here/), `the drop marker of ${id}`);
      assert.ok(has(/^\[thaw\] \d+ bytes of log output dropped/), `the dropped count of ${id}`);
      assert.ok(mine.length < 20_000, `${mine.length} lines stored of a 200 MB flood`);
    }

    const logsDb = dbBytes(s.dataDir, 'logs.db');
    const stateDb = dbBytes(s.dataDir, 'thaw.db');
    t.diagnostic(`logs.db + WAL: ${(logsDb / 1048576).toFixed(1)} MB, thaw.db + WAL: ${(stateDb / 1048576).toFixed(1)} MB`);
    assert.ok(logsDb < 80 * 1024 * 1024, `logs.db + WAL is ${logsDb} bytes`);
    assert.ok(stateDb < 16 * 1024 * 1024, `thaw.db + WAL is ${stateDb} bytes`);

    // The flooder's lines go with it, and so does their space.
    await s.client.send(new DeleteFunctionCommand({ FunctionName: 'flooder' }));
    const afterDelete = dbBytes(s.dataDir, 'logs.db');
    t.diagnostic(`logs.db + WAL after deleting the flooder: ${(afterDelete / 1048576).toFixed(1)} MB`);
    assert.ok(afterDelete < logsDb / 2, `logs.db + WAL went from ${logsDb} to ${afterDelete} bytes`);
    assert.equal((await logsOf(s, 'victim', 'since=0&limit=10000')).length, victimLines.length, 'the neighbour keeps its lines');
  });
});

test('a data directory whose thaw.db holds a flood of old log lines gets that space back on start', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'thaw-test-data-'));
  const db = openDb(join(dataDir, 'thaw.db'));
  const insert = db.prepare("INSERT INTO logs (function_name, version, request_id, ts, message) VALUES (?, '$LATEST', 'r', 1, ?)");
  const line = 'x'.repeat(1023);
  db.transaction(() => {
    for (let i = 0; i < 40 * 1024; i++) insert.run(i < 100 ? 'quiet' : 'loud', line);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const before = dbBytes(dataDir, 'thaw.db');
  assert.ok(before > 40 * 1024 * 1024, `thaw.db is ${before} bytes`);
  const s = await startServer({ dataDir });
  try {
    const after = dbBytes(dataDir, 'thaw.db');
    const logs = dbBytes(dataDir, 'logs.db');
    assert.ok(after < 4 * 1024 * 1024, `thaw.db + WAL went from ${before} to ${after} bytes`);
    assert.ok(logs < 24 * 1024 * 1024, `logs.db + WAL is ${logs} bytes (the loud function kept at most its cap)`);
  } finally {
    await s.stop();
  }
  // The quiet function's lines moved over whole; the loud one's were trimmed to its cap.
  const store = new LogStore(join(dataDir, 'logs.db'));
  try {
    assert.equal(store.query('quiet', { since: 0, limit: 1000 }).length, 100);
    assert.ok(store.storedBytes('loud') <= 16 * 1024 * 1024);
  } finally {
    store.close();
  }
});
