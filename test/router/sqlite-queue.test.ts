import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../../src/control/db.js';
import { SqliteEventQueue } from '../../src/router/sqlite-queue.js';
import { queueConformance } from './queue-conformance.js';

queueConformance('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'thaw-queue-'));
  const dbA = openDb(join(dir, 'thaw.db'));
  const dbB = openDb(join(dir, 'thaw.db'));
  return {
    a: new SqliteEventQueue(dbA, 'consumer-a'),
    b: new SqliteEventQueue(dbB, 'consumer-b'),
    close: async () => {
      dbA.close();
      dbB.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('SQLite queue: events stored and leased before the database is closed are there after reopening', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'thaw-queue-'));
  try {
    const file = join(dir, 'thaw.db');
    let db = openDb(file);
    const before = new SqliteEventQueue(db);
    for (let n = 0; n < 3; n++) {
      await before.put({ requestId: `r${n}`, functionName: 'fn', qualifier: null, payload: Buffer.from(`{"n":${n}}`), clientContext: null, enqueuedAt: 1000 + n });
    }
    const inFlight = await before.claim(5000, 2);
    for (const e of inFlight) await before.started(e.requestId);
    db.close();

    db = openDb(file);
    const after = new SqliteEventQueue(db);
    assert.equal(await after.recover(), 2);
    const all = await after.claim(5000, 10);
    assert.deepEqual(all.map((e) => e.requestId), ['r0', 'r1', 'r2']);
    assert.deepEqual(all.map((e) => e.invokes), [1, 1, 0]);
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
