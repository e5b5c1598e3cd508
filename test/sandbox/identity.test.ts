import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { SandboxSpec } from '../../src/sandbox/driver.js';
import { DEFAULT_UID_BASE, IdentityPool } from '../../src/sandbox/identity.js';
import { NamespacesDriver } from '../../src/sandbox/namespaces.js';
import { seccompArch, syscallNumber } from '../../src/sandbox/seccomp/filter.js';
import { silentLogger } from '../../src/util/log.js';
import { LIMITS, PATH, makeDir, newId, removeDir, run, start } from './helpers.js';

const skip = process.getuid?.() !== 0 || !existsSync('/usr/bin/bwrap') ? 'needs root and /usr/bin/bwrap' : false;
const T = { timeout: 120_000, skip };
const arch = seccompArch() ?? 'x64';
const nr = (name: string): string => String(syscallNumber(arch, name));

/**
 * add.py ADD_KEY KEYCTL SECONDS DESCRIPTION: add a "user" key to the user keyring (@u = -4), print its id, read it back (the
 * owner may), wait, then clear @u so a later holder of this uid finds nothing.
 * read.py KEYCTL ID DESCRIPTION: read that key by id (KEYCTL_READ = 11) and search @u for it (KEYCTL_SEARCH = 10).
 */
const ADD_KEY = String.raw`
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
add_key, keyctl, secs, desc = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
r = libc.syscall(add_key, b"user", desc, b"the-secret-value", 16, ctypes.c_int(-4))
if r < 0:
    print('add errno %d' % ctypes.get_errno(), flush=True)
    sys.exit(0)
buf = ctypes.create_string_buffer(64)
n = libc.syscall(keyctl, 11, r, buf, 64)
print('key %d own-read %s' % (r, buf.value.decode() if n >= 0 else 'errno %d' % ctypes.get_errno()), flush=True)
time.sleep(secs)
libc.syscall(keyctl, 7, ctypes.c_int(-4))
`;
const READ_KEY = String.raw`
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
keyctl, key, desc = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
buf = ctypes.create_string_buffer(64)
r = libc.syscall(keyctl, 11, key, buf, 64)
print('read', 'ok ' + buf.value.decode() if r >= 0 else 'errno %d' % ctypes.get_errno())
r = libc.syscall(keyctl, 10, ctypes.c_int(-4), b"user", desc, 0)
print('search', 'ok %d' % r if r >= 0 else 'errno %d' % ctypes.get_errno())
`;

describe('sandbox identities', () => {
  let code: string;
  const spec = (argv: string[], over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    id: newId('idn'), mounts: [{ host: code, sandbox: '/var/task' }], argv, env: { PATH }, cwd: '/var/task', limits: LIMITS, ...over,
  });
  before(() => {
    code = makeDir('thaw-idn-code-', { 'add.py': ADD_KEY, 'read.py': READ_KEY });
  });
  after(() => removeDir(code));

  test('the pool skips nobody and host accounts, hands ids out round robin and takes them back', () => {
    const named = new Set(['/etc/passwd', '/etc/group'].flatMap((f) => readFileSync(f, 'utf8').split('\n').map((l) => Number(l.split(':')[2]))));
    const pool = new IdentityPool({ base: 65532, count: 4, leaseDir: null });
    const free = [65532, 65533, 65535].filter((u) => !named.has(u));
    const a = pool.acquire();
    a.release();
    a.release();
    const b = pool.acquire();
    if (free.length > 1) assert.notEqual(b.uid, a.uid, 'round robin: a released id is reused last');
    const got = [b, ...Array.from({ length: free.length - 1 }, () => pool.acquire())];
    assert.deepEqual(got.map((x) => x.uid).sort(), free, 'never 65534 (nobody) nor an id of /etc/passwd or /etc/group');
    for (const x of got) assert.equal(x.gid, x.uid);
    assert.throws(() => pool.acquire(), /in use/);
    assert.throws(() => new IdentityPool({ base: 0, count: 10 }), /invalid/);
  });

  test('leases are shared through files: a live owner keeps its id, a dead owner\'s lease is taken over once no process of its uid runs', async () => {
    const dir = makeDir('thaw-idn-leases-');
    try {
      const base = DEFAULT_UID_BASE + 60000;
      const one = new IdentityPool({ base, count: 2, leaseDir: dir });
      const two = new IdentityPool({ base, count: 2, leaseDir: dir });
      const a = one.acquire();
      const b = two.acquire();
      assert.notEqual(a.uid, b.uid, 'two pools on one host never hand out the same id');
      assert.throws(() => two.acquire(), /in use/);
      a.release();
      assert.equal(two.acquire().uid, a.uid);
      // A lease whose owner is gone (no such pid: above the host's pid_max).
      writeFileSync(`${dir}/${base + 10}`, String(Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1));
      assert.equal(new IdentityPool({ base: base + 10, count: 1, leaseDir: dir }).acquire().uid, base + 10);
      writeFileSync(`${dir}/${base + 11}`, String(process.ppid));
      assert.throws(() => new IdentityPool({ base: base + 11, count: 1, leaseDir: dir }).acquire(), /in use/);
      // The owner is gone but a process of its uid still runs (an environment a killed server left frozen):
      // the id stays taken until that process is gone too.
      const leftover = spawn('setpriv', [`--reuid=${base + 12}`, `--regid=${base + 12}`, '--clear-groups', 'sleep', '30'], { stdio: 'ignore' });
      const exited = once(leftover, 'exit');
      try {
        const pid = leftover.pid ?? 0;
        for (let i = 0; i < 100 && statSync(`/proc/${pid}`).uid !== base + 12; i++) await sleep(20);
        writeFileSync(`${dir}/${base + 12}`, String(Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1));
        assert.throws(() => new IdentityPool({ base: base + 12, count: 1, leaseDir: dir }).acquire(), /in use/);
      } finally {
        leftover.kill('SIGKILL');
        await exited;
      }
      assert.equal(new IdentityPool({ base: base + 12, count: 1, leaseDir: dir }).acquire().uid, base + 12);
    } finally {
      removeDir(dir);
    }
  });

  test('two environments run as different uids from the reserved range, and get their uid back into the pool', T, async () => {
    const pool = new IdentityPool({ base: DEFAULT_UID_BASE + 50000, count: 1000 });
    const driver = new NamespacesDriver({ logger: silentLogger, identities: pool });
    const a = await start(driver, spec(['/bin/sh', '-c', 'id -u; id -g; exec sleep 60']));
    const b = await start(driver, spec(['/bin/sh', '-c', 'id -u; id -g; exec sleep 60']));
    try {
      await Promise.all([a.out.waitFor('\n'), b.out.waitFor('\n')]);
      await Promise.all([a.out.waitFor(`${a.sb.uid}\n${a.sb.uid}\n`), b.out.waitFor(`${b.sb.uid}\n${b.sb.uid}\n`)]);
      assert.notEqual(a.sb.uid, b.sb.uid);
      for (const u of [a.sb.uid, b.sb.uid]) assert.ok((u ?? 0) >= DEFAULT_UID_BASE + 50000);
      assert.equal(pool.inUse(), 2);
    } finally {
      await a.sb.destroy();
      await b.sb.destroy();
    }
    assert.equal(pool.inUse(), 0);
  });

  test('a key one environment adds to its keyring cannot be read by another (uids alone, filter off)', T, async () => {
    const driver = new NamespacesDriver({ logger: silentLogger, seccomp: false });
    // A description of its own: user keyrings outlive their uid's processes, so an earlier run's key must not count.
    const desc = `thaw-secret-${randomUUID()}`;
    const a = await start(driver, spec(['/usr/bin/python3', 'add.py', nr('add_key'), nr('keyctl'), '30', desc]));
    try {
      await a.out.waitFor('\n', 30_000);
      const m = /^key (\d+) own-read the-secret-value$/m.exec(a.out.text);
      assert.ok(m !== null, `the owner adds and reads its key: ${a.out.text} ${a.err.text}`);
      const r = await run(driver, spec(['/usr/bin/python3', 'read.py', nr('keyctl'), m[1] as string, desc]));
      assert.equal(r.exit.code, 0, r.stderr);
      assert.match(r.stdout, /^read errno (13|126)$/m, 'EACCES or ENOKEY, never the value');
      assert.match(r.stdout, /^search errno 126$/m, 'another uid\'s user keyring is not searched');
      assert.doesNotMatch(r.stdout, /the-secret-value/);
    } finally {
      await a.sb.destroy();
    }
  });

  test('with the filter (the default) no key can be added at all', T, async () => {
    const r = await run(new NamespacesDriver({ logger: silentLogger }), spec(['/usr/bin/python3', 'add.py', nr('add_key'), nr('keyctl'), '0', `thaw-secret-${randomUUID()}`]));
    assert.equal(r.exit.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'add errno 1');
  });

  test('the workload has 1,024 descriptors, soft and hard, and cannot raise them', T, async () => {
    const r = await run(new NamespacesDriver({ logger: silentLogger }), spec(['/bin/sh', '-c', 'ulimit -Sn; ulimit -Hn; ulimit -n 4096 2>/dev/null && echo RAISED; ulimit -Hp']));
    assert.equal(r.exit.code, 0, r.stderr);
    assert.equal(r.stdout, `1024\n1024\n${LIMITS.pids}\n`);
  });
});
