import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LogStore, type LogRow } from '../../src/logs/store.js';
import { reportLine } from '../../src/logs/format.js';
import { TailRing } from '../../src/logs/tail.js';
import { LINE_CUT_MARKER, MAX_LINE_BYTES, OutputCapture } from '../../src/logs/capture.js';
import { LogBudget } from '../../src/logs/budget.js';
import { LogWriter } from '../../src/logs/writer.js';
import { silentLogger } from '../../src/util/log.js';

const row = (functionName: string, i: number, size = 200): LogRow =>
  ({ functionName, version: '$LATEST', requestId: `r${i}`, timestamp: 1000 + i, message: `line ${i} ${'x'.repeat(size)}`, attempt: null });
const tmp = (): string => mkdtempSync(join(tmpdir(), 'thaw-logs-'));

test('log store keeps the newest lines within its size cap, per function queries in order', () => {
  const store = new LogStore(join(tmp(), 'logs.db'), { capBytes: 200 * 1024 });
  for (let i = 0; i < 2000; i++) store.append([row(i % 2 === 0 ? 'even' : 'odd', i)]);
  assert.ok(store.storedBytes() <= 200 * 1024, `stored ${store.storedBytes()} bytes`);
  const newest = store.query('even', { limit: 3 });
  assert.deepEqual(newest.map((l) => l.requestId), ['r1994', 'r1996', 'r1998']);
  const after = store.query('odd', { afterSeq: newest[0]?.seq ?? 0, limit: 2 });
  assert.deepEqual(after.map((l) => l.requestId), ['r1995', 'r1997']);
  assert.equal(store.query('even', { requestId: 'r0' }).length, 0, 'the oldest lines were dropped');
  store.close();
});

test('a function over its own cap loses only its own lines; over the total cap the largest loses first', () => {
  const store = new LogStore(join(tmp(), 'logs.db'), { capBytes: 1024 * 1024, functionCapBytes: 512 * 1024 });
  for (let i = 0; i < 50; i++) store.append([row('quiet', i)]);
  for (let i = 0; i < 20; i++) store.append(Array.from({ length: 100 }, (_, j) => row('loud', i * 100 + j, 1000)));
  assert.ok(store.storedBytes('loud') <= 512 * 1024, `loud stores ${store.storedBytes('loud')}`);
  assert.equal(store.query('quiet', { since: 0, limit: 100 }).length, 50, 'the quiet function keeps every line');
  // Two loud functions and the quiet one over the total cap: the quiet one is not touched.
  for (let i = 0; i < 20; i++) store.append(Array.from({ length: 100 }, (_, j) => row('loud2', i * 100 + j, 1000)));
  assert.ok(store.storedBytes() <= 1024 * 1024);
  assert.equal(store.query('quiet', { since: 0, limit: 100 }).length, 50, 'still every line of the quiet function');
  store.close();
});

test('deleted lines give their space back to the filesystem (incremental auto-vacuum, truncated WAL)', () => {
  const dir = tmp();
  const file = join(dir, 'logs.db');
  const store = new LogStore(file, { capBytes: 64 * 1024 * 1024, functionCapBytes: 32 * 1024 * 1024 });
  for (let i = 0; i < 100; i++) store.append(Array.from({ length: 100 }, (_, j) => row('big', i * 100 + j, 1000)));
  store.reclaim(true);
  const full = statSync(file).size;
  assert.ok(full > 8 * 1024 * 1024, `${full} bytes after 10 MB of lines`);
  store.deleteFunction('big');
  const after = statSync(file).size;
  const wal = statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
  assert.ok(after < full / 4, `file shrank from ${full} to ${after}`);
  assert.ok(wal < 4 * 1024 * 1024, `WAL ${wal} bytes`);
  store.close();
});

test('lines of an older data directory move from thaw.db into the log store, sequence numbers kept', () => {
  const dir = tmp();
  const legacy = new Database(join(dir, 'thaw.db'));
  legacy.exec('CREATE TABLE logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, function_name TEXT NOT NULL, version TEXT NOT NULL, request_id TEXT, ts INTEGER NOT NULL, message TEXT NOT NULL, attempt INTEGER)');
  legacy.prepare("INSERT INTO logs (seq, function_name, version, request_id, ts, message) VALUES (41, 'f', '$LATEST', 'r', 5, 'old line')").run();
  legacy.close();
  const store = new LogStore(join(dir, 'logs.db'));
  assert.equal(store.importLegacy(join(dir, 'thaw.db')), 1);
  assert.deepEqual(store.query('f', { since: 0 }).map((l) => [l.seq, l.message]), [[41, 'old line']]);
  assert.equal(store.importLegacy(join(dir, 'thaw.db')), 0, 'moved once');
  store.append([row('f', 1)]);
  assert.ok((store.query('f', { limit: 1 })[0]?.seq ?? 0) > 41, 'new lines come after the old ones');
  store.close();
});

test('a query answers at most 8 MiB of messages; the rest is paged with afterSeq', () => {
  const store = new LogStore(join(tmp(), 'logs.db'), { capBytes: 64 * 1024 * 1024, functionCapBytes: 32 * 1024 * 1024 });
  for (let i = 0; i < 60; i++) store.append([row('f', i, 200 * 1024)]);
  const first = store.query('f', { since: 0, limit: 10000 });
  assert.ok(first.length > 0 && first.length < 60, `${first.length} lines`);
  const rest = store.query('f', { afterSeq: first.at(-1)?.seq ?? 0, limit: 10000 });
  assert.equal(first.length + rest.length, 60);
  store.close();
});

test('REPORT line and the 4 KB tail ring are formatted as Lambda does', () => {
  assert.equal(
    reportLine({ requestId: 'id', durationMs: 1.234, memorySizeMb: 128, maxMemoryUsedMb: 40, initDurationMs: 150.5 }),
    'REPORT RequestId: id\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 150.50 ms\t',
  );
  const ring = new TailRing();
  ring.line('é'.repeat(3000));
  for (let i = 0; i < 1000; i++) ring.line(`line ${i}`);
  ring.line(`${'é'.repeat(1000)}END`);
  const t = ring.bytes();
  assert.ok(t.length <= 4096);
  assert.ok(t.toString('utf8').endsWith('END\n'));
  assert.ok(!t.toString('utf8').includes('\uFFFD'), 'cut at a character boundary');
  const small = new TailRing();
  small.line('a');
  small.line('b');
  assert.equal(small.bytes().toString(), 'a\nb\n');
  assert.equal(TailRing.from(small).bytes().toString(), 'a\nb\n');
});

test('output capture splits lines across chunks, cuts lines over 256 KB with a marker, and drops what the gate refuses unread', () => {
  const lines: string[] = [];
  const dropped: [number, boolean][] = [];
  let open = true;
  const c = new OutputCapture(() => open, { line: (l) => lines.push(l), dropped: (b, f) => dropped.push([b, f]) });
  c.write(Buffer.from('one\ntw'));
  c.write(Buffer.from('o\n'));
  c.write(Buffer.from('x'.repeat(MAX_LINE_BYTES + 10)));
  c.write(Buffer.from('yyy\nthree\n'));
  assert.deepEqual(lines.slice(0, 2), ['one', 'two']);
  assert.equal(Buffer.byteLength(lines[2] ?? ''), MAX_LINE_BYTES);
  assert.ok(lines[2]?.endsWith(LINE_CUT_MARKER));
  assert.equal(lines[3], 'three', 'the rest of the cut line is skipped');
  open = false;
  c.write(Buffer.from('lost\nlost'));
  c.write(Buffer.from('lost\n'));
  open = true;
  c.write(Buffer.from('rest of a dropped line\nfour\nfive'));
  c.end();
  assert.deepEqual(lines.slice(4), ['four', 'five']);
  assert.deepEqual(dropped, [[9, true], [5, false]]);
});

test('log budget: a burst, then the rate; once dry it stays dry until half the burst is back', () => {
  let now = 0;
  const b = new LogBudget({ bytesPerSecond: 1000, burstBytes: 1000 }, () => now);
  assert.ok(b.take(900));
  assert.ok(!b.take(200));
  now += 300; // 400 tokens: still under half the burst
  assert.ok(!b.take(10));
  now += 200; // 600
  assert.ok(b.take(500));
});

test('log writer: storage falling behind drops only the flooding function\'s own lines, with a marker; platform lines stay', async () => {
  const w = await LogWriter.open({ file: join(tmp(), 'logs.db'), logger: silentLogger, maxPendingBytesPerFunction: 64 * 1024, flushMs: 10_000 });
  try {
    const at = { timestamp: 1 };
    w.write('loud', '$LATEST', { ...at, requestId: 'L', message: 'START RequestId: L' }, true);
    for (let i = 0; i < 1000; i++) w.write('loud', '$LATEST', { ...at, requestId: 'L', message: 'x'.repeat(1000) }, false);
    w.write('loud', '$LATEST', { ...at, requestId: 'L', message: 'END RequestId: L' }, true);
    for (let i = 0; i < 10; i++) w.write('quiet', '$LATEST', { ...at, requestId: 'Q', message: `quiet ${i}` }, false);
    const quiet = await w.query('quiet', { since: 0 });
    assert.deepEqual(quiet.map((l) => l.message), Array.from({ length: 10 }, (_, i) => `quiet ${i}`));
    const loud = (await w.query('loud', { since: 0, limit: 10000 })).map((l) => l.message);
    assert.equal(loud[0], 'START RequestId: L');
    assert.equal(loud.at(-1), 'END RequestId: L');
    assert.ok(loud.length < 100, `${loud.length} lines kept`);
    assert.match(loud.at(-2) ?? '', /^\[thaw\] \d+ bytes of log output dropped: log storage fell behind$/);
    await w.deleteFunction('loud');
    assert.equal((await w.query('loud', { since: 0 })).length, 0);
  } finally {
    await w.close();
  }
});
