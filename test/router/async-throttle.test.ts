import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { CREDS } from '../helpers/server.js';
import { createFunction, invokeEvent, logLines, waitFor } from '../helpers/async.js';

/** Room for one environment and four events at a time: three of them are throttled at first. */
let thaw: Thaw;
let client: LambdaClient;
const serverLog: string[] = [];

before(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      serverLog.push(chunk.toString());
      done();
    },
  });
  thaw = await startThaw({
    port: 0, dataDir: mkdtempSync(join(tmpdir(), 'thaw-async-throttle-')), credentials: CREDS,
    maxEnvironments: 1, asyncConcurrency: 4, asyncRetryBaseMs: 100, logger: pino({ level: 'info' }, sink),
  });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
});
after(async () => {
  client.destroy();
  await thaw.close();
});

test('throttled Event invocations wait and run later; a throttle is not an attempt', async () => {
  await createFunction(client, 'sleepy', 'exports.handler = async (e) => { await new Promise((r) => setTimeout(r, 400)); return e.n; };');
  const ids: string[] = [];
  for (let n = 0; n < 4; n++) ids.push(await invokeEvent(client, 'sleepy', { n }));
  const reports = await waitFor('all four events', 60_000, async () => {
    const r = (await logLines(thaw.url, 'sleepy')).filter((l) => l.message.startsWith('REPORT '));
    return r.length >= 4 ? r : undefined;
  });
  for (const id of ids) {
    assert.deepEqual(reports.filter((l) => l.requestId === id).map((l) => l.attempt), [1], `event ${id} ran once, as its first attempt`);
  }
  const throttled = serverLog.map((l) => JSON.parse(l) as { msg: string; code?: string }).filter((l) => l.msg === 'async event throttled; it waits');
  assert.ok(throttled.length > 0, 'events were throttled');
  assert.ok(throttled.every((l) => l.code === 'TooManyRequests'));
});
