import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { detectCgroups } from '../../src/sandbox/cgroups.js';
import { silentLogger } from '../../src/util/log.js';
import { newId } from './helpers.js';

const manager = process.getuid?.() === 0 ? await detectCgroups({ logger: silentLogger }) : null;

test('environments left frozen by a Thaw that died are thawed and killed; a live owner\'s are left alone', { timeout: 60_000, skip: manager === null ? 'needs writable cgroups' : false }, async () => {
  if (manager === null) return;
  const orphan = await manager.create(newId('orph'), { memoryBytes: 64 << 20, pids: 16, cpuShares: 1024 });
  const owned = await manager.create(newId('owned'), { memoryBytes: 64 << 20, pids: 16, cpuShares: 1024 });
  try {
    // An orphan: the shell that joined the cgroup exits, leaving its sleep to the host's init.
    execFileSync('/bin/sh', ['-c', `${orphan.joinScript()} && (sleep 120 >/dev/null 2>&1 &)`]);
    // Owned: a child of this process, as bwrap is the child of the Thaw that started it.
    const child = spawn('/bin/sh', ['-c', `${owned.joinScript()} && exec sleep 120`], { stdio: 'ignore' });
    for (let i = 0; i < 100 && (await owned.procs()).length === 0; i++) await sleep(10);
    const [orphanPid] = await orphan.procs();
    assert.ok(orphanPid !== undefined);
    assert.ok(orphan.freeze() && owned.freeze());
    await sleep(100);
    assert.equal(await manager.thawOrphans(), 1);
    assert.ok(await orphan.waitEmpty(10_000), 'the orphaned environment is gone');
    assert.equal((await owned.procs()).length, 1, 'the owned one still runs');
    const state = owned.dirs.map((d) => { try { return readFileSync(join(d, 'freezer.state'), 'utf8').trim(); } catch { return ''; } }).filter((x) => x !== '');
    if (owned.version === 1) assert.deepEqual(state, ['FROZEN']);
    child.kill('SIGKILL');
  } finally {
    await orphan.remove();
    await owned.remove();
  }
});
