import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../../src/control/db.js';
import { LogStore } from '../../src/logs/store.js';
import { reportLine, tail } from '../../src/logs/format.js';

test('log store keeps the newest lines within its size cap, per function queries in order', () => {
  const db = openDb(join(mkdtempSync(join(tmpdir(), 'thaw-logs-')), 'thaw.db'));
  const store = new LogStore(db, 200 * 1024);
  for (let i = 0; i < 2000; i++) {
    store.append(i % 2 === 0 ? 'even' : 'odd', '$LATEST', [{ requestId: `r${i}`, timestamp: 1000 + i, message: `line ${i} ${'x'.repeat(200)}` }]);
  }
  store.trim();
  const total = (db.prepare('SELECT SUM(LENGTH(message) + 64) AS b FROM logs').get() as { b: number }).b;
  assert.ok(total <= 200 * 1024, `stored ${total} bytes`);
  const newest = store.query('even', { limit: 3 });
  assert.deepEqual(newest.map((l) => l.requestId), ['r1994', 'r1996', 'r1998']);
  const after = store.query('odd', { afterSeq: newest[0]?.seq ?? 0, limit: 2 });
  assert.deepEqual(after.map((l) => l.requestId), ['r1995', 'r1997']);
  assert.equal(store.query('even', { requestId: 'r0' }).length, 0, 'the oldest lines were dropped');
  db.close();
});

test('REPORT line and tail are formatted as Lambda does', () => {
  assert.equal(
    reportLine({ requestId: 'id', durationMs: 1.234, memorySizeMb: 128, maxMemoryUsedMb: 40, initDurationMs: 150.5 }),
    'REPORT RequestId: id\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 150.50 ms\t',
  );
  const long = `${'é'.repeat(3000)}END`;
  const t = Buffer.from(tail(long), 'base64');
  assert.ok(t.length <= 4096);
  assert.ok(t.toString('utf8').endsWith('END'));
  assert.ok(!t.toString('utf8').includes('\uFFFD'), 'cut at a character boundary');
});
