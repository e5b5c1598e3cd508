import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateFunctionCommand, GetProvisionedConcurrencyConfigCommand, PutProvisionedConcurrencyConfigCommand,
  type GetProvisionedConcurrencyConfigCommandOutput,
} from '@aws-sdk/client-lambda';
import { ROLE, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { logLines } from '../helpers/async.js';

/**
 * Finding 11 of issue 10 (provisioned part): environments that crash right after Init were re-created about 8
 * times a second with no backoff, and the configuration was reported READY. Now each re-creation waits twice as
 * long as the one before, and after five in a row the configuration is FAILED with a StatusReason.
 */

/**
 * Init succeeds; 200 ms later, with nothing to do, the runtime exits. Each Init logs one BOOT line. The server runs
 * with --no-freeze: a frozen idle environment cannot exit on its own, which would hide the crash loop this tests.
 */
const CRASHER = `console.log('BOOT ' + require('crypto').randomUUID());
setTimeout(() => process.exit(7), 200);
exports.handler = async () => 'never';`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('provisioned environments that keep crashing after Init back off and end FAILED', () => {
  let s: RunningServer;

  before(async () => {
    s = await startServer({ args: ['--no-stem-cells', '--no-freeze', '--account-concurrency', '20'] });
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'crasher', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Publish: true,
      Code: { ZipFile: await zipFiles({ 'index.js': CRASHER }) },
    }));
  });
  after(async () => {
    await s.stop();
  });

  const boots = async (): Promise<number> => (await logLines(s.url, 'crasher')).filter((l) => l.message.includes('BOOT ')).length;
  const get = (): Promise<GetProvisionedConcurrencyConfigCommandOutput> =>
    s.client.send(new GetProvisionedConcurrencyConfigCommand({ FunctionName: 'crasher', Qualifier: '1' }));

  test('re-created with growing waits, then FAILED with a reason; no more environments after that', async () => {
    const t0 = Date.now();
    const put = await s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'crasher', Qualifier: '1', ProvisionedConcurrentExecutions: 1 }));
    assert.equal(put.Status, 'IN_PROGRESS');
    // Before: ~8 new environments a second, forever. Now waits of 1, 2, 4 and 8 s between five environments.
    let last: GetProvisionedConcurrencyConfigCommandOutput | undefined;
    const bootsAt: number[] = [];
    while (Date.now() - t0 < 90_000) {
      last = await get();
      if (last.Status === 'FAILED') break;
      bootsAt.push(await boots());
      assert.ok((bootsAt.at(-1) ?? 0) <= 6, `${bootsAt.at(-1)} environments started in ${Date.now() - t0} ms`);
      await sleep(500);
    }
    assert.equal(last?.Status, 'FAILED', `still ${last?.Status} after 90 s`);
    assert.match(last.StatusReason ?? '', /5 provisioned environments in a row stopped after Init/);
    assert.equal(last.AllocatedProvisionedConcurrentExecutions, 0);
    const took = Date.now() - t0;
    assert.ok(took >= 10_000, `FAILED after ${took} ms: the waits between re-creations were not applied`);
    const atFailure = await boots();
    assert.ok(atFailure >= 5 && atFailure <= 6, `${atFailure} environments were started`);
    // FAILED stays FAILED: nothing more is started.
    await sleep(4000);
    assert.equal(await boots(), atFailure);
    assert.equal((await get()).Status, 'FAILED');
  });

  test('putting the configuration again starts over', async () => {
    const before = await boots();
    const put = await s.client.send(new PutProvisionedConcurrencyConfigCommand({ FunctionName: 'crasher', Qualifier: '1', ProvisionedConcurrentExecutions: 1 }));
    assert.equal(put.Status, 'IN_PROGRESS');
    for (let i = 0; i < 100 && (await boots()) === before; i++) await sleep(100);
    assert.ok((await boots()) > before, 'a new environment is started after the configuration is put again');
  });
});
