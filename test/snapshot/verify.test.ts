import assert from 'node:assert/strict';
import { cp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { SnapshotVerifyError, type SnapshotVerifyErrorCode } from '../../src/snapshot/errors.js';
import { BLOB_FILE, MANIFEST_FILE, verifySnapshot } from '../../src/snapshot/manifest.js';
import { restoreArgv } from '../../src/snapshot/restore.js';
import { NODES, buildFunction, tempDir } from './helpers.js';

/** A snapshot is checked before V8 ever sees it: V8 itself does not checksum startup snapshots. */

let outDir: string;
before(async () => {
  ({ outDir } = await buildFunction({ 'index.js': `exports.handler = async () => 'ok';\n` }, 'index.handler'));
});

async function copy(): Promise<string> {
  const dir = path.join(await tempDir('verify'), 'snap');
  await cp(outDir, dir, { recursive: true });
  return dir;
}

async function rejectsWith(p: Promise<unknown>, code: SnapshotVerifyErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof SnapshotVerifyError && e.code === code);
}

describe('verifySnapshot', () => {
  test('accepts the snapshot as built, with its binary and flags', async () => {
    const v = await verifySnapshot(outDir, { nodeBinary: NODES.node24, flags: [] });
    assert.equal(v.blobPath, path.join(outDir, BLOB_FILE));
    assert.equal(v.manifest.node.path, NODES.node24);
    assert.match(v.manifest.node.version, /^v24\./);
    assert.match(v.manifest.node.sha256, /^[0-9a-f]{64}$/);
    assert.equal(v.manifest.runtimeId, 'nodejs24.x');
    assert.equal(v.manifest.handler, 'index.handler');
  });

  test('refuses a blob with one byte changed', async () => {
    const dir = await copy();
    const fh = await open(path.join(dir, BLOB_FILE), 'r+');
    const { size } = await fh.stat();
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, Math.floor(size / 2));
    b[0] = (b[0] ?? 0) ^ 0x01;
    await fh.write(b, 0, 1, Math.floor(size / 2));
    await fh.close();
    await rejectsWith(verifySnapshot(dir), 'ChecksumMismatch');
  });

  test('refuses a truncated or missing blob', async () => {
    const dir = await copy();
    await truncate(path.join(dir, BLOB_FILE), 4096);
    await rejectsWith(verifySnapshot(dir), 'SizeMismatch');
    await rm(path.join(dir, BLOB_FILE));
    await rejectsWith(verifySnapshot(dir), 'BlobMissing');
  });

  test('refuses an uncommitted or unreadable manifest', async () => {
    const dir = await copy();
    const manifest = await readFile(path.join(dir, MANIFEST_FILE), 'utf8');
    await writeFile(path.join(dir, MANIFEST_FILE), manifest.replace('"format": 1', '"format": 2'));
    await rejectsWith(verifySnapshot(dir), 'ManifestInvalid');
    await writeFile(path.join(dir, MANIFEST_FILE), '{ not json');
    await rejectsWith(verifySnapshot(dir), 'ManifestInvalid');
    await rm(path.join(dir, MANIFEST_FILE));
    await rejectsWith(verifySnapshot(dir), 'ManifestMissing');
  });

  test('refuses another runtime binary or other flags', async () => {
    await rejectsWith(verifySnapshot(outDir, { nodeBinary: NODES.node22 }), 'BinaryChanged');
    await rejectsWith(verifySnapshot(outDir, { flags: ['--max-old-space-size=128'] }), 'FlagsChanged');
  });
});

describe('restoreArgv', () => {
  test('puts the runtime arguments after --, where Node does not read them as its own options', () => {
    assert.deepEqual(restoreArgv({ nodeBinary: '/var/lang/bin/node', blobPath: '/var/snap/snapshot.blob', flags: ['--stack-size=900'], runtimeApiSocket: '/var/run/thaw/runtime-api.sock' }), [
      '/var/lang/bin/node', '--stack-size=900', '--snapshot-blob', '/var/snap/snapshot.blob', '--', '--runtime-api-socket', '/var/run/thaw/runtime-api.sock',
    ]);
    assert.deepEqual(restoreArgv({ nodeBinary: 'node', blobPath: 'b', flags: [] }), ['node', '--snapshot-blob', 'b', '--']);
  });
});
