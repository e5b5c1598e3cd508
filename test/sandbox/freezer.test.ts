import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { LAMBDA_PIDS, accountPidsMax, detectCgroups, environmentPids } from '../../src/sandbox/cgroups.js';
import { NamespacesDriver } from '../../src/sandbox/namespaces.js';
import { silentLogger } from '../../src/util/log.js';
import { LIMITS, run, shellSpec, start, within } from './helpers.js';

const cgroups = process.getuid?.() === 0 ? await detectCgroups({ logger: silentLogger }) : null;
const skip = process.getuid?.() !== 0 || !existsSync('/usr/bin/bwrap') || cgroups === null ? 'needs root, /usr/bin/bwrap and writable cgroups' : false;
const T = { timeout: 180_000, skip };

const spec = shellSpec('frz');

/** Host pids of the processes of a sandbox's cgroup, by the cgroup directory named after its id. */
function cgroupProcs(id: string): number[] {
  for (const dir of cgroups?.parents ?? []) {
    try {
      return readFileSync(join(dir, id, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '').map(Number);
    } catch {
      // Not in this hierarchy.
    }
  }
  return [];
}

function state(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return '';
  }
}

describe('idle environments, pids and zombies', () => {
  const driver = new NamespacesDriver({ logger: silentLogger });

  test('a frozen environment burns no CPU, and runs again once thawed', T, async () => {
    const { sb, out } = await start(driver, spec('echo spinning; while :; do :; done'));
    try {
      await out.waitFor('spinning');
      await sleep(200);
      const cpu = (): number => sb.cpuUsageNs?.() ?? NaN;
      assert.ok(Number.isFinite(cpu()), 'the cgroup reports CPU time');
      assert.equal(sb.freeze?.(), true);
      await sleep(200); // the kernel completes the freeze on its own
      const frozenAt = cpu();
      await sleep(1000);
      const frozenUse = cpu() - frozenAt;
      assert.ok(frozenUse < 20e6, `frozen: ${(frozenUse / 1e6).toFixed(1)} ms of CPU in 1 s`);
      sb.thaw?.();
      const thawedAt = cpu();
      await sleep(1000);
      const thawedUse = cpu() - thawedAt;
      assert.ok(thawedUse > 100e6, `thawed: ${(thawedUse / 1e6).toFixed(1)} ms of CPU in 1 s`);
      // Frozen again, the environment still dies on destroy (v1 frozen tasks ignore SIGKILL until thawed).
      sb.freeze?.();
      await sleep(100);
    } finally {
      await within(sb.destroy(), 30_000, 'destroying a frozen sandbox');
    }
    const exit = await sb.exited;
    assert.equal(exit.signal, 'SIGKILL');
  });

  test('a fork bomb stays within its pids limit while a neighbour starts and finishes', T, async () => {
    const pids = 64;
    const bomb = await start(driver, spec('echo bombing; b() { b | b & }; b; sleep 60', { limits: { ...LIMITS, pids } }));
    try {
      await bomb.out.waitFor('bombing');
      let peak = 0;
      for (let i = 0; i < 20; i++) {
        peak = Math.max(peak, cgroupProcs(bomb.sb.id).length);
        await sleep(50);
      }
      assert.ok(peak <= pids, `${peak} processes for a limit of ${pids}`);
      const t0 = Date.now();
      const r = await run(driver, spec('echo neighbour-ok'));
      assert.equal(r.stdout, 'neighbour-ok\n', r.stderr);
      assert.ok(Date.now() - t0 < 30_000, 'the neighbour is not starved');
    } finally {
      await bomb.sb.destroy();
    }
  });

  test('all environments together are capped below the host\'s pids (the parent cgroup\'s pids.max)', T, () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    assert.ok(accountPidsMax() <= pidMax / 2);
    const parent = (cgroups?.parents ?? []).find((d) => existsSync(join(d, 'pids.max')));
    assert.ok(parent !== undefined, 'a pids hierarchy');
    const max = readFileSync(join(parent, 'pids.max'), 'utf8').trim();
    assert.notEqual(max, 'max');
    assert.ok(Number(max) <= accountPidsMax(), `pids.max ${max}`);
  });

  test('orphans are reaped by the sandbox\'s pid 1: no zombies accumulate', T, async () => {
    // 100 short-lived orphans (their parent subshell exits at once); then count zombies in the cgroup.
    const { sb, out } = await start(driver, spec('i=0; while [ $i -lt 100 ]; do (sleep 0.05 &); i=$((i+1)); done; echo spawned; exec sleep 60'));
    try {
      await out.waitFor('spawned');
      await sleep(1000);
      const procs = cgroupProcs(sb.id);
      const zombies = procs.filter((p) => state(p) === 'Z');
      assert.deepEqual(zombies, [], `zombies among ${procs.length} processes`);
      assert.ok(procs.length <= 4, `${procs.length} processes left: ${procs.map((p) => `${p}:${state(p)}`).join(' ')}`);
    } finally {
      await sb.destroy();
    }
    assert.deepEqual(readdirSync('/proc').filter((p) => /^\d+$/.test(p) && cgroupProcs(sb.id).includes(Number(p))), []);
  });

  test('every environment\'s pids.max fits the account\'s share of the host: the sum never exceeds it', () => {
    for (const account of [accountPidsMax(), 16_384, 2_097_152]) {
      for (const envs of [16, 64, 256, 1024]) {
        const each = environmentPids(envs, 16, account);
        assert.ok(each >= 64 && each <= LAMBDA_PIDS, `${each} pids each for ${envs} environments`);
        if (each > 64) assert.ok(each * (envs + 16) + LAMBDA_PIDS <= account, `${envs} × ${each} over ${account}`);
      }
    }
    // Lambda's 1,024 wherever the host can hold it for every environment; an equal share where it cannot
    // (pid_max 32,768: the account's 16,384 over 64 environments, stem cells and a build).
    assert.equal(environmentPids(64, 16, 2_097_152), LAMBDA_PIDS);
    assert.equal(environmentPids(64, 16, 16_384), 192);
  });
});
