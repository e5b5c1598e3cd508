import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import { build, installedFixture, json, plainStart, restore, restored, stop, tempDir, type Restored } from './helpers.js';

/**
 * The realistic benchmark function (AWS SDK S3 client, lodash, zod, ajv, express) snapshots, restores, and
 * answers exactly as a plain start of the same code does.
 */

let rapi: RuntimeApiServer;
const running: Restored[] = [];
before(() => {
  rapi = new RuntimeApiServer();
});
after(async () => {
  await Promise.all(running.map((r) => stop(rapi, r)));
  await rapi.close();
});

describe('the realistic fixture', () => {
  test('restores from a snapshot and answers like a plain start', async () => {
    const codeDir = installedFixture('realistic');
    const outDir = path.join(await tempDir('realistic'), 'snap');
    const result = await build(codeDir, 'index.handler', outDir);
    assert.ok(result.bundle.inputs > 100, `bundled ${result.bundle.inputs} files`);
    assert.ok(result.deferred.includes('http'), 'express loads http during Init');

    const events = [{}, { title: 'Snap Start', order: { id: 'o-2', items: [{ sku: 'a', qty: 2 }, { sku: 'b', qty: 3 }] } }];

    const snap = await restore(rapi, result.blobPath, codeDir);
    running.push(snap);
    await restored(snap);
    const fromSnapshot = [];
    for (const e of events) fromSnapshot.push(json(await snap.port.invoke(e)));

    const plain = await plainStart(rapi, codeDir, 'index.handler');
    running.push(plain);
    const fromPlain = [];
    for (const e of events) fromPlain.push(json(await plain.port.invoke(e)));

    assert.deepEqual(fromSnapshot, fromPlain);
    assert.deepEqual(fromSnapshot[1], { ok: true, slug: 'snap-start', units: 5, region: 'us-east-1', routes: 1 });

    // Invalid input fails the same way too (zod throws in the handler).
    const bad = { order: { id: 'o-3', items: [{ sku: 'a', qty: -1 }] } };
    const [snapBad, plainBad] = [await snap.port.invoke(bad), await plain.port.invoke(bad)];
    assert.equal(snapBad.kind, 'error');
    assert.equal(plainBad.kind, 'error');
    assert.equal((json(snapBad) as { errorType: string }).errorType, (json(plainBad) as { errorType: string }).errorType);
    assert.equal(snap.port.restoreCalls, 1);
  });
});
