import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EphemeralStorage } from '../../src/sandbox/ephemeral.js';
import { NamespacesDriver } from '../../src/sandbox/namespaces.js';
import { isThawError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { gone, loopsUnder, mountsUnder } from './ephemeral-helpers.js';
import { LIMITS, MiB, makeDir, newId, removeDir, run, shellSpec, start } from './helpers.js';

/** /tmp as EphemeralStorage: a disk-backed filesystem per environment, apart from the memory limit. */
const usable = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');
const T = { timeout: 300_000, skip: usable ? false : 'needs root and bubblewrap' };

/** sha256 of `text` repeated to `bytes` bytes, as `yes` | head -c writes it. */
function repeatedHash(line: string, bytes: number): string {
  const h = createHash('sha256');
  const block = Buffer.from(line.repeat(Math.ceil(MiB / line.length))).subarray(0, Math.floor(MiB / line.length) * line.length);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, block.length);
    h.update(block.subarray(0, n));
    left -= n;
  }
  return h.digest('hex');
}

describe('ephemeral storage (/tmp) of the namespaces driver', () => {
  let root: string;
  let dir: string;
  let code: string;
  let storage: EphemeralStorage;
  let driver: NamespacesDriver;
  const spec = shellSpec('eph', () => code);

  before(async () => {
    if (!usable) return;
    root = mkdtempSync(join(tmpdir(), 'thaw-eph-'));
    dir = join(root, 'ephemeral');
    code = makeDir('thaw-eph-code-', { 'index.js': 'code\n' });
    const s = await EphemeralStorage.open({ dir, logger: silentLogger, reserveBytes: 0 });
    assert.ok(s !== undefined, 'disk-backed /tmp works on this host');
    storage = s;
    driver = new NamespacesDriver({ logger: silentLogger, ephemeral: storage });
  });
  after(async () => {
    if (!usable) return;
    removeDir(code);
    // Whatever a failed test left mounted goes first: a recursive delete must never reach into a mount.
    for (const d of [join(root, 'spares'), dir]) await (await EphemeralStorage.open({ dir: d, logger: silentLogger, reserveBytes: 0 }))?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('the image directory is root\'s alone (mode 0700)', T, () => {
    const st = statSync(dir);
    assert.equal(st.uid, 0);
    assert.equal(st.mode & 0o777, 0o700);
  });

  test('a 128 MB environment writes 400 MB to /tmp and reads it back without being OOM-killed', T, async () => {
    const line = 'thaw ephemeral storage\n';
    const bytes = 400 * MiB;
    const r = await run(
      driver,
      spec(`yes '${line.trimEnd()}' | head -c ${bytes} > /tmp/big && ls -l /tmp/big | cut -d' ' -f5 && sha256sum /tmp/big | cut -d' ' -f1`, {
        limits: { ...LIMITS, memoryBytes: 128 * MiB, tmpBytes: 512 * MiB },
      }),
      240_000,
    );
    assert.equal(r.exit.oomKilled, false, r.stderr);
    assert.equal(r.exit.code, 0, r.stderr);
    const [size, hash] = r.stdout.trim().split('\n');
    assert.equal(Number(size), bytes);
    assert.equal(hash, repeatedHash(line, bytes));
  });

  test('writing past the size fails with ENOSPC inside the sandbox and nothing else; df shows about the size', T, async () => {
    const r = await run(
      driver,
      spec('dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; echo "dd=$?"; echo still-running; df -k /tmp | tail -1', { limits: { ...LIMITS, tmpBytes: 32 * MiB } }),
    );
    assert.equal(r.exit.code, 0, r.stderr);
    assert.match(r.stdout, /No space left on device/);
    assert.match(r.stdout, /dd=1\nstill-running\n/);
    const total = Number(r.stdout.trim().split('\n').pop()?.split(/\s+/)[1]);
    assert.ok(total > 28 * 1024 && total <= 32 * 1024, `df size ${total} KiB for 32 MiB`);
  });

  test('df /tmp shows about 10,240 MB for the largest EphemeralStorage, and /tmp is the sandbox user\'s', T, async () => {
    const r = await run(driver, spec('df -k /tmp | tail -1; echo "$(stat -c %u /tmp)=$(id -u) $(stat -c %a /tmp)"; ls -A /tmp | wc -l', { limits: { ...LIMITS, tmpBytes: 10240 * MiB } }));
    assert.equal(r.exit.code, 0, r.stderr);
    const [df, owner, entries] = r.stdout.trim().split('\n');
    const total = Number(df?.split(/\s+/)[1]);
    assert.ok(total > 0.97 * 10240 * 1024 && total <= 10240 * 1024, `df size ${total} KiB for 10240 MiB`);
    assert.match(owner ?? '', /^(\d+)=\1 1777$/, 'owned by the sandbox user, mode 1777');
    assert.notEqual(owner?.split('=')[0], '0');
    assert.equal(entries, '0', 'an empty /tmp (no lost+found)');
  });

  test('the host keeps no view of a running environment\'s /tmp, and the sandbox sees no host path for it', T, async () => {
    const s = await start(driver, spec('echo data > /tmp/f; grep " /tmp " /proc/self/mountinfo; echo ready; while sleep 1; do :; done'));
    try {
      await s.out.waitFor('ready');
      await gone('image files and mount points', () => readdirSync(dir));
      assert.deepEqual(mountsUnder(dir), []);
      const mountLine = s.out.text.split('\n').find((l) => l.includes(' /tmp ')) ?? '';
      assert.match(mountLine, / ext4 \/dev\/loop\d+ /);
      assert.ok(!mountLine.includes(root), mountLine);
      assert.match(mountLine, /nosuid/);
      assert.match(mountLine, /nodev/);
    } finally {
      await s.sb.destroy();
    }
  });

  test('/tmp contents do not leak between environments, and the filesystem is freed when its environment ends', T, async () => {
    const a = await start(driver, spec('echo secret-of-a > /tmp/marker; echo ready; while sleep 1; do :; done'));
    try {
      await a.out.waitFor('ready');
      const b = await run(driver, spec('cat /tmp/marker 2>&1 || echo ABSENT; ls -A /tmp'));
      assert.match(b.stdout, /ABSENT/);
      assert.doesNotMatch(b.stdout, /secret-of-a/);
      assert.equal(loopsUnder(dir).length, 1, 'only the running environment\'s loop device is left');
    } finally {
      await a.sb.destroy();
    }
    await gone('loop devices of ended environments', () => loopsUnder(dir));
    assert.deepEqual(readdirSync(dir), []);
    const c = await run(driver, spec('cat /tmp/marker 2>&1 || echo ABSENT'));
    assert.match(c.stdout, /ABSENT/);
  });

  test('what a killed server left (a mounted image not yet handed to a sandbox) is removed when storage opens again', T, async () => {
    const leftover = await storage.create(newId('left'), 64 * MiB, { uid: 993, gid: 990 });
    assert.equal(mountsUnder(dir).length, 1);
    assert.equal(readdirSync(dir).length, 2);
    const again = await EphemeralStorage.open({ dir, logger: silentLogger, reserveBytes: 0 });
    assert.ok(again !== undefined);
    assert.deepEqual(mountsUnder(dir), []);
    assert.deepEqual(readdirSync(dir), []);
    await gone('loop devices of leftovers', () => loopsUnder(dir));
    await leftover.release();
  });

  test('a spare made ahead serves a start of its size: empty, the sandbox user\'s, replaced in the background, released on close', T, async () => {
    const sdir = join(root, 'spares');
    const s3 = await EphemeralStorage.open({ dir: sdir, logger: silentLogger, reserveBytes: 0, spares: 1 });
    assert.ok(s3 !== undefined);
    const spareImages = (): string[] => readdirSync(sdir).filter((n) => /^spare-[0-9a-f]+\.img$/.test(n));
    await gone('waiting for a spare', () => (s3.sparesReady === 1 ? [] : ['none yet']));
    assert.equal(spareImages().length, 1);
    const [first] = spareImages();
    const d3 = new NamespacesDriver({ logger: silentLogger, ephemeral: s3 });
    const r = await run(d3, spec('echo "$(stat -c %u /tmp)=$(id -u) $(stat -c %a /tmp)"; ls -A /tmp | wc -l; echo written > /tmp/f && cat /tmp/f', { limits: { ...LIMITS, tmpBytes: 512 * MiB } }));
    assert.match(r.stdout, /^(\d+)=\1 1777\n0\nwritten\n$/, r.stderr);
    await gone('a new spare in place of the one taken', () => (s3.sparesReady === 1 && spareImages().length === 1 && spareImages()[0] !== first ? [] : spareImages()));
    await s3.close();
    assert.deepEqual(readdirSync(sdir), []);
    assert.deepEqual(mountsUnder(sdir), []);
    await gone('loop devices of released spares', () => loopsUnder(sdir));
  });

  test('a new /tmp is refused while the disk could not hold every live one in full; the sandbox is not started', T, async () => {
    // A 1 GiB filesystem of its own to hold the images: the host's disk is shared.
    const small = await storage.create(newId('small'), 1024 * MiB, { uid: 0, gid: 0 });
    try {
      const s2 = await EphemeralStorage.open({ dir: join(small.mountPoint, 'e'), logger: silentLogger, reserveBytes: 128 * MiB });
      assert.ok(s2 !== undefined);
      const d2 = new NamespacesDriver({ logger: silentLogger, ephemeral: s2 });
      // Two at once, with room for one (beside a small one already live): exactly one is made.
      const pin = await s2.create(newId('pin'), 16 * MiB, { uid: 993, gid: 990 });
      const both = await Promise.allSettled([newId('a'), newId('b')].map((id) => s2.create(id, 512 * MiB, { uid: 993, gid: 990 })));
      const made = both.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const refused = both.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      assert.equal(made.length, 1, 'one of two concurrent creates');
      assert.ok(isThawError(refused[0]) && refused[0].code === 'ServiceUnavailable', String(refused[0]));
      await Promise.all([made[0]?.release(), pin.release()]);
      const held = await start(d2, spec('echo ready; while sleep 1; do :; done', { limits: { ...LIMITS, tmpBytes: 512 * MiB } }));
      try {
        await held.out.waitFor('ready');
        await assert.rejects(d2.start(spec('echo never', { limits: { ...LIMITS, tmpBytes: 512 * MiB } })), (e: unknown) => {
          assert.ok(isThawError(e) && e.code === 'ServiceUnavailable', String(e));
          return true;
        });
      } finally {
        await held.sb.destroy();
      }
      const r = await run(d2, spec('echo started', { limits: { ...LIMITS, tmpBytes: 512 * MiB } }));
      assert.equal(r.stdout, 'started\n');
    } finally {
      await small.release();
    }
  });
});
