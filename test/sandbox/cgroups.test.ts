import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { detectCgroups, sharesToWeight, type Cgroup } from '../../src/sandbox/cgroups.js';
import { silentLogger, type Logger } from '../../src/util/log.js';
import { Collector, MiB, newId, within } from './helpers.js';

const manager = await detectCgroups({ logger: silentLogger });
const why = manager === null ? 'cgroups are not writable here' : false;
if (manager === null) console.log(`# skipping cgroup tests: ${why}`);

function capture(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const logger = { ...silentLogger, warn: (_o: unknown, msg: string) => warnings.push(msg), debug: () => undefined };
  return { logger: logger as unknown as Logger, warnings };
}

/** Run `script` in a shell that joined `cg` first; resolves with the child once it printed `ready`. */
async function joined(cg: Cgroup, script: string): Promise<{ pid: number; out: Collector; exit: Promise<unknown> }> {
  const child = spawn('/bin/sh', ['-c', `${cg.joinScript()} && exec "$@"`, 'sh', '/bin/sh', '-c', script], {
    env: {},
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const out = new Collector(child.stdout);
  const exit = once(child, 'exit');
  await out.waitFor('ready');
  return { pid: child.pid ?? -1, out, exit };
}

/** Dead, or a zombie its (possibly adoptive) parent has not reaped yet. */
function deadOrZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

describe('cgroups', () => {
  test('detection finds this host\'s cgroups once', { skip: why }, async () => {
    assert.ok(manager !== null);
    assert.ok(manager.controllers.has('memory'));
    assert.equal(await detectCgroups({ logger: silentLogger }), manager, 'memoized');
  });

  test('sweep() removes empty cgroups left behind, and never one with a process in it', { skip: why }, async () => {
    assert.ok(manager !== null);
    const empty = await manager.create(newId('sweep'), { memoryBytes: 64 * MiB, pids: 8, cpuShares: 128 });
    const busy = await manager.create(newId('sweep'), { memoryBytes: 64 * MiB, pids: 8, cpuShares: 128 });
    const child = spawn('/bin/sh', ['-c', `${busy.joinScript()} && exec sleep 30`], { stdio: 'ignore' });
    try {
      await within((async () => {
        while (readFileSync(join(busy.dirs[0] ?? '', 'cgroup.procs'), 'utf8').trim() === '') await new Promise((r) => setTimeout(r, 20));
      })(), 5000, 'the child joining its cgroup');
      const mine = new Set([empty.id, busy.id]);
      // Young cgroups are kept: another Thaw may be about to move a sandbox in.
      assert.equal(await manager.sweep(60_000, (id) => mine.has(id)), 0);
      assert.equal(await manager.sweep(0, (id) => mine.has(id)), empty.dirs.length, 'one directory per controller');
      assert.ok(empty.dirs.every((d) => !existsSync(d)), 'the empty cgroup is gone');
      assert.ok(busy.dirs.every((d) => existsSync(d)), 'the busy cgroup stays');
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
      await busy.killAll();
      await busy.remove();
    }
  });

  test('create() applies the limits', { skip: why }, async () => {
    assert.ok(manager !== null);
    const cg = await manager.create(newId('cg'), { memoryBytes: 96 * MiB, pids: 17, cpuShares: 512 });
    try {
      const read = (c: string, f: string): string => {
        const dir = cg.dirs.find((d) => d.includes(`/${c}/`)) ?? cg.dirs[0] ?? '';
        return readFileSync(join(dir, f), 'utf8').trim();
      };
      if (manager.version === 1) {
        assert.equal(read('memory', 'memory.limit_in_bytes'), String(96 * MiB));
        const memsw = cg.dirs.map((d) => join(d, 'memory.memsw.limit_in_bytes')).find(existsSync);
        if (memsw !== undefined) assert.equal(readFileSync(memsw, 'utf8').trim(), String(96 * MiB));
        if (manager.controllers.has('pids')) assert.equal(read('pids', 'pids.max'), '17');
        if (manager.controllers.has('cpu')) assert.equal(read('cpu', 'cpu.shares'), '512');
      } else {
        assert.equal(read('', 'memory.max'), String(96 * MiB));
        assert.equal(read('', 'pids.max'), '17');
        assert.equal(read('', 'cpu.weight'), String(sharesToWeight(512)));
      }
    } finally {
      await cg.remove();
    }
    for (const d of cg.dirs) assert.ok(!existsSync(d), `${d} removed`);
  });

  test('limits can be raised and lowered on a live cgroup', { skip: why }, async () => {
    assert.ok(manager !== null);
    const cg = await manager.create(newId('cg'), { memoryBytes: 64 * MiB, pids: 8, cpuShares: 256 });
    try {
      const memFile = manager.version === 1 ? 'memory.limit_in_bytes' : 'memory.max';
      const memDir = cg.dirs.find((d) => existsSync(join(d, memFile))) ?? '';
      for (const bytes of [512 * MiB, 96 * MiB, 1024 * MiB]) {
        await cg.applyLimits({ memoryBytes: bytes, pids: 8, cpuShares: 256 });
        assert.equal(readFileSync(join(memDir, memFile), 'utf8').trim(), String(bytes));
        const memsw = join(memDir, 'memory.memsw.limit_in_bytes');
        if (existsSync(memsw)) assert.equal(readFileSync(memsw, 'utf8').trim(), String(bytes));
      }
    } finally {
      await cg.remove();
    }
    await cg.applyLimits({ memoryBytes: 64 * MiB, pids: 8, cpuShares: 256 }); // removed: a no-op
  });

  test('a joined process and everything it forks are killed, stats survive removal', { skip: why }, async () => {
    assert.ok(manager !== null);
    const id = newId('cg');
    const cg = await manager.create(id, { memoryBytes: 256 * MiB, pids: 64, cpuShares: 1024 });
    const { pid, exit, out } = await joined(cg, '(setsid sleep 300 &); sleep 300 & cat /proc/self/cgroup; echo ready; wait');
    assert.match(out.text, new RegExp(`/thaw/${id}$`, 'm'));
    const procs = await cg.procs();
    assert.ok(procs.includes(pid) && procs.length >= 3, String(procs));
    const peak = cg.maxMemoryBytes();
    assert.ok(peak > 0);
    await cg.remove();
    await within(exit, 10_000, 'the shell to die');
    await within(out.ended, 10_000, 'every process holding stdout to die');
    for (const p of procs) assert.ok(deadOrZombie(p), `pid ${p} still running`);
    assert.equal(cg.maxMemoryBytes(), peak);
    assert.equal(cg.oomKilled(), false);
    await cg.remove(); // idempotent
  });

  test('creating an id that already exists replaces the stale cgroup', { skip: why }, async () => {
    assert.ok(manager !== null);
    const id = newId('cg');
    const stale = await manager.create(id, { memoryBytes: 64 * MiB, pids: 8, cpuShares: 1024 });
    const { exit } = await joined(stale, 'echo ready; sleep 300');
    const fresh = await manager.create(id, { memoryBytes: 64 * MiB, pids: 8, cpuShares: 1024 });
    await within(exit, 10_000, 'the stale cgroup\'s process to die');
    assert.deepEqual(await fresh.procs(), []);
    await fresh.remove();
  });

  test('cgroup v2 placement, kill and removal (on the unified hierarchy, whatever controllers it has)', async (t) => {
    const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
    if (!/ - cgroup2 /.test(mountinfo)) return t.skip('no cgroup2 mount on this host');
    const parent = `/thaw-test-${process.pid}`;
    const { logger, warnings } = capture();
    const v2 = await detectCgroups({ logger, version: 2, parent });
    if (v2 === null) return t.skip(`cgroup v2 not writable: ${warnings.join('; ')}`);
    const id = newId('cg');
    const cg = await v2.create(id, { memoryBytes: 128 * MiB, pids: 32, cpuShares: 1024 });
    const parentDir = join(cg.dirs[0] ?? '', '..');
    try {
      const { exit, out } = await joined(cg, 'sleep 300 & cat /proc/self/cgroup; echo ready; wait');
      assert.match(out.text, new RegExp(`^0::${parent}/${id}$`, 'm'));
      await cg.remove();
      await within(exit, 10_000, 'the shell to die');
      assert.ok(!existsSync(cg.dirs[0] ?? ''));
      if (v2.controllers.size < 3) assert.ok(warnings.some((w) => /controllers unavailable/.test(w)));
    } finally {
      await cg.remove();
      rmdirSync(parentDir);
    }
  });

  test('unwritable cgroups degrade to null with one warning', async () => {
    const { logger, warnings } = capture();
    // A parent below a regular file cannot be created.
    const opts = { logger, version: 1 as const, parent: '/cgroup.procs/thaw' };
    assert.equal(await detectCgroups(opts), null);
    assert.equal(await detectCgroups(opts), null);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /WITHOUT memory, pids and cpu limits/);
  });

  test('cpu.shares convert to cpu.weight as the OCI runtimes do', () => {
    assert.equal(sharesToWeight(2), 1);
    assert.equal(sharesToWeight(1024), 40);
    assert.equal(sharesToWeight(262144), 10000);
    assert.equal(sharesToWeight(1), 1);
  });
});
