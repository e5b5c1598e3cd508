import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateFunctionCommand, InvokeCommand, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { DEFAULT_UID_BASE } from '../../src/sandbox/identity.js';
import { ROLE, decode, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

/**
 * Functions against each other on one server with the namespaces driver: each environment its own uid, idle
 * environments frozen, Lambda's descriptor limit, and a fork bomb, a memory hog and a CPU spinner that leave a
 * neighbour's invocations alone.
 */
/** A base of its own (--sandbox-uid-base), inside the default range's span. */
const UID_BASE = DEFAULT_UID_BASE + 0x20000;
const skip = process.getuid?.() !== 0 || !existsSync('/usr/bin/bwrap') ? 'needs root and /usr/bin/bwrap' : false;

/** Host pid of the process whose command line holds `marker`. */
function findProcess(marker: string): number | undefined {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) return Number(p);
    } catch {
      // Gone.
    }
  }
  return undefined;
}

/** cpuacct.usage (ns) of the v1 cgroup a host process is in, or cpu.stat's usage on v2. */
function cgroupCpuNs(pid: number): number {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.map((l) => /^\d+:([^:]*):(.*)$/.exec(l)).find((m) => m !== null && m[1]?.split(',').includes('cpuacct'));
  if (v1 !== undefined && v1 !== null) {
    const dir = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f.at(-1)?.split(',').includes('cpuacct') && f.includes('cgroup'))?.[4];
    return Number(readFileSync(`${dir}${v1[2]}/cpuacct.usage`, 'utf8'));
  }
  const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '/';
  return Number(/^usage_usec (\d+)$/m.exec(readFileSync(`/sys/fs/cgroup${v2}/cpu.stat`, 'utf8'))?.[1]) * 1000;
}

describe('neighbours (namespaces driver)', { skip }, () => {
  let s: RunningServer;
  const create = async (name: string, code: string, extra: Record<string, unknown> = {}): Promise<void> => {
    await s.client.send(new CreateFunctionCommand({
      FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles({ 'index.js': code }) }, ...extra,
    }));
  };
  const invoke = (name: string, payload: unknown = {}): Promise<InvokeCommandOutput> =>
    s.client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)) }));

  before(async () => {
    s = await startServer({ args: ['--driver', 'namespaces', '--no-stem-cells', '--sandbox-uid-base', String(UID_BASE)] });
  });
  after(async () => {
    await s.stop();
  });

  test('two functions run as different uids from the configured range, with 1,024 descriptors', async () => {
    const code = `const fs = require('fs');
      exports.handler = async () => ({ uid: process.getuid(), gid: process.getgid(),
        nofile: /^Max open files\\s+(\\d+)\\s+(\\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8')).slice(1),
        mountinfo: fs.readFileSync('/proc/self/mountinfo', 'utf8') });`;
    await create('who-a', code);
    await create('who-b', code);
    const a = decode((await invoke('who-a')).Payload) as { uid: number; gid: number; nofile: string[]; mountinfo: string };
    const b = decode((await invoke('who-b')).Payload) as { uid: number; gid: number; nofile: string[]; mountinfo: string };
    // What the mount table still shows of the host is documented; Thaw's data directory is never in it.
    assert.doesNotMatch(a.mountinfo, new RegExp(s.dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.match(a.mountinfo, / \/var\/task ro,/);
    assert.notEqual(a.uid, b.uid);
    for (const x of [a, b]) {
      assert.ok(x.uid >= UID_BASE && x.uid < UID_BASE + 65536, `uid ${x.uid}`);
      assert.equal(x.gid, x.uid);
      assert.deepEqual(x.nofile, ['1024', '1024']);
    }
  });

  test('a loop a function leaves running after its invocation gets no CPU while the environment is idle', async () => {
    const marker = `thaw-spin-${process.pid}-${Date.now()}`;
    await create('spinner', `const { spawn } = require('child_process');
      let ticks = 0;
      exports.handler = async (e) => {
        if (e.start) {
          spawn('/bin/sh', ['-c', 'while :; do :; done', '${marker}'], { detached: true, stdio: 'ignore' }).unref();
          setInterval(() => { ticks++; }, 10);
        }
        return { ticks };
      };`);
    const first = decode((await invoke('spinner', { start: true })).Payload) as { ticks: number };
    let pid: number | undefined;
    for (let i = 0; i < 50 && pid === undefined; i++) {
      pid = findProcess(marker);
      if (pid === undefined) await sleep(20);
    }
    assert.ok(pid !== undefined, 'the detached loop runs');
    await sleep(500); // the freeze follows the request for the next event by 50 ms
    const before = cgroupCpuNs(pid);
    await sleep(3000);
    const idleCpuMs = (cgroupCpuNs(pid) - before) / 1e6;
    assert.ok(idleCpuMs < 150, `${idleCpuMs.toFixed(1)} ms of CPU in 3 s idle`);
    const second = decode((await invoke('spinner')).Payload) as { ticks: number };
    assert.ok(second.ticks - first.ticks < 60, `${second.ticks - first.ticks} timer ticks in 3.5 s idle (300 if it ran)`);
  });

  test('a fork bomb, a memory hog and a CPU spinner leave a neighbour\'s invocations alone', async () => {
    await create('victim', 'exports.handler = async (e) => ({ ok: e.n });', { Timeout: 30 });
    await create('bomb', `const { spawn } = require('child_process');
      exports.handler = async () => {
        spawn('/bin/sh', ['-c', 'b() { b | b & }; b'], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 4000));
        return 'bombed';
      };`, { Timeout: 30 });
    await create('hog', `exports.handler = async () => { const keep = []; for (;;) keep.push(Buffer.alloc(8 << 20, 1)); };`, { Timeout: 30, MemorySize: 128 });
    await create('spin', `exports.handler = async () => { const end = Date.now() + 4000; while (Date.now() < end); return 'spun'; };`, { Timeout: 30 });
    assert.deepEqual(decode((await invoke('victim', { n: 0 })).Payload), { ok: 0 });
    const attackers = Promise.all(['bomb', 'hog', 'spin'].map((n) => invoke(n).catch((e: unknown) => e)));
    await sleep(300);
    const times: number[] = [];
    for (let n = 1; n <= 10; n++) {
      const t0 = Date.now();
      const r = await invoke('victim', { n });
      times.push(Date.now() - t0);
      assert.equal(r.FunctionError, undefined, Buffer.from(r.Payload ?? []).toString());
      assert.deepEqual(decode(r.Payload), { ok: n });
      await sleep(200);
    }
    const results = await attackers;
    const hog = results[1] as InvokeCommandOutput;
    assert.equal(hog.FunctionError, 'Unhandled', 'the hog ran out of its own memory');
    // Generous: a shared machine; the point is that none waits for the attackers' timeouts.
    assert.ok(Math.max(...times) < 10_000, `victim invoke times ${times.join(', ')} ms`);
  });
});
