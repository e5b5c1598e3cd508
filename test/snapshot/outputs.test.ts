import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { SnapshotBuildError } from '../../src/snapshot/errors.js';
import { copyOutput, readOutput, writeInput } from '../../src/snapshot/outputs.js';
import { tempDir } from './helpers.js';

/**
 * What a build sandbox can leave in its scratch directory, read the way the host reads it: only regular files
 * with one link, within their size limit, never through a link, never blocking, never written through.
 */
const refused = (re: RegExp) => (e: unknown): boolean => e instanceof SnapshotBuildError && e.code === 'OutputRejected' && re.test(e.userMessage);

async function scratch(): Promise<{ dir: string; host: string }> {
  const root = await tempDir('outputs');
  const dir = path.join(root, 'work');
  mkdirSync(dir);
  const host = path.join(root, 'host-secret');
  writeFileSync(host, 'host secret', { mode: 0o600 });
  return { dir, host };
}

describe('build outputs', () => {
  test('a regular file is read; a missing one is undefined', async () => {
    const { dir } = await scratch();
    writeFileSync(path.join(dir, 'r.json'), '{"ok":true}');
    assert.equal((await readOutput(dir, 'r.json', 1024))?.toString(), '{"ok":true}');
    assert.equal(await readOutput(dir, 'missing', 1024), undefined);
  });

  test('a symbolic link (to a host file, to a device) is refused, not followed', async () => {
    const { dir, host } = await scratch();
    symlinkSync(host, path.join(dir, 'to-host'));
    symlinkSync('/dev/zero', path.join(dir, 'to-dev'));
    await assert.rejects(readOutput(dir, 'to-host', 1 << 20), refused(/to-host.*symbolic link/));
    await assert.rejects(copyOutput(dir, 'to-dev', path.join(dir, '..', 'copy'), 1 << 20), refused(/symbolic link/));
  });

  test('a hard link (two names for one file) is refused', async () => {
    const { dir, host } = await scratch();
    linkSync(host, path.join(dir, 'linked'));
    await assert.rejects(readOutput(dir, 'linked', 1 << 20), refused(/hard link/));
  });

  test('a FIFO is refused at once (no writer: a plain open would block forever)', async () => {
    const { dir } = await scratch();
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    await assert.rejects(readOutput(dir, 'fifo', 1 << 20), refused(/not a regular file/));
  });

  test('a device node and a directory are refused', async () => {
    const { dir } = await scratch();
    execFileSync('mknod', [path.join(dir, 'zero'), 'c', '1', '5']);
    mkdirSync(path.join(dir, 'a-dir'));
    await assert.rejects(readOutput(dir, 'zero', 1 << 20), refused(/not a regular file/));
    await assert.rejects(readOutput(dir, 'a-dir', 1 << 20), refused(/not a regular file/));
  });

  test('a huge sparse file is refused from its size, before anything is read or copied', async () => {
    const { dir } = await scratch();
    const p = path.join(dir, 'snapshot.blob');
    writeFileSync(p, '');
    truncateSync(p, 100 * 1024 ** 3);
    const dest = path.join(dir, '..', 'blob-copy');
    await assert.rejects(copyOutput(dir, 'snapshot.blob', dest, 2 * 1024 ** 3), refused(/larger than/));
    assert.throws(() => statSync(dest), /ENOENT/, 'no copy was started');
  });

  test('renaming a link into the name while the host opens it: either the opened file is copied or the output is refused, never the link followed', async () => {
    const { dir, host } = await scratch();
    const blob = path.join(dir, 'snapshot.blob');
    for (let i = 0; i < 20; i++) {
      rmSync(blob, { force: true });
      writeFileSync(blob, Buffer.alloc(1 << 20, 7));
      const dest = path.join(dir, '..', `blob-copy-${i}`);
      const copying = copyOutput(dir, 'snapshot.blob', dest, 1 << 30).then((r) => ({ r }), (err: unknown) => ({ err }));
      const swap = path.join(dir, 'swap');
      symlinkSync(host, swap);
      renameSync(swap, blob);
      const out = await copying;
      if ('err' in out) {
        assert.ok(refused(/symbolic link|hard link/)(out.err), String(out.err));
      } else {
        assert.equal(out.r?.sizeBytes, 1 << 20);
        assert.deepEqual(readFileSync(dest), Buffer.alloc(1 << 20, 7));
        assert.equal(statSync(dest).mode & 0o777, 0o644);
      }
    }
    assert.equal(readFileSync(host, 'utf8'), 'host secret');
    assert.equal(statSync(host).mode & 0o777, 0o600);
  });

  test('the copy never writes through an existing name at its destination', async () => {
    const { dir, host } = await scratch();
    writeFileSync(path.join(dir, 'snapshot.blob'), 'blob');
    const dest = path.join(dir, '..', 'dest-link');
    symlinkSync(host, dest);
    await assert.rejects(copyOutput(dir, 'snapshot.blob', dest, 1 << 20), /EEXIST/);
    assert.equal(readFileSync(host, 'utf8'), 'host secret');
  });

  test('a host input is never written through a link the sandbox left at its name', async () => {
    const { dir, host } = await scratch();
    symlinkSync(host, path.join(dir, 'builtins.bin'));
    await assert.rejects(writeInput(dir, 'builtins.bin', 'data'), /EEXIST/);
    assert.equal(readFileSync(host, 'utf8'), 'host secret');
    assert.equal(statSync(host).mode & 0o777, 0o600);
    await writeInput(dir, 'fresh.json', '{}');
    assert.equal(readFileSync(path.join(dir, 'fresh.json'), 'utf8'), '{}');
  });
});
