import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { SandboxSpec } from '../../src/sandbox/driver.js';
import { NamespacesDriver } from '../../src/sandbox/namespaces.js';
import { seccompArch, syscallNumber } from '../../src/sandbox/seccomp/filter.js';
import { silentLogger } from '../../src/util/log.js';
import { LIMITS, PATH, makeDir, newId, removeDir, run, start } from './helpers.js';

const skip = process.getuid?.() !== 0 || !existsSync('/usr/bin/bwrap') ? 'needs root and /usr/bin/bwrap' : false;
const T = { timeout: 120_000, skip };
const arch = seccompArch() ?? 'x64';

/** Each named syscall with harmless arguments; prints "name ok" or "name errno N". */
const PROBE = String.raw`
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
calls = {
  'unshare_user': ('unshare', [0x10000000]),
  'unshare_mount': ('unshare', [0x00020000]),
  'clone_newuser': ('clone', [0x10000000 | 17, 0, 0, 0, 0]),
  'clone3': ('clone3', [0, 0]),
  'ptrace_traceme': ('ptrace', [0, 0, 0, 0]),
  'bpf': ('bpf', [0, 0, 0]),
  'perf_event_open': ('perf_event_open', [0, 0, -1, -1, 0]),
  'keyctl': ('keyctl', [0, ctypes.c_int(-4), 0]),
  'add_key': ('add_key', [b"user", b"k", b"v", 1, ctypes.c_int(-4)]),
  'request_key': ('request_key', [b"user", b"k", 0, 0]),
  'mount': ('mount', [b"none", b"/tmp", b"tmpfs", 0, 0]),
  'pivot_root': ('pivot_root', [b"/tmp", b"/tmp"]),
  'setns': ('setns', [0, 0]),
  'userfaultfd': ('userfaultfd', [0]),
  'io_uring_setup': ('io_uring_setup', [1, 0]),
  'kexec_load': ('kexec_load', [0, 0, 0, 0]),
  'init_module': ('init_module', [0, 0, b""]),
  'swapon': ('swapon', [b"/tmp/x", 0]),
  'getpid': ('getpid', []),
}
nrs = dict(a.split('=') for a in sys.argv[1:])
for label, (name, args) in calls.items():
    n = libc.syscall(int(nrs[name]), *args)
    print(label, 'ok' if n >= 0 else 'errno %d' % ctypes.get_errno(), flush=True)
`;
const NAMES = ['unshare', 'clone', 'clone3', 'ptrace', 'bpf', 'perf_event_open', 'keyctl', 'add_key', 'request_key', 'mount', 'pivot_root', 'setns', 'userfaultfd', 'io_uring_setup', 'kexec_load', 'init_module', 'swapon', 'getpid'];

describe('seccomp in the namespaces sandbox', () => {
  const driver = new NamespacesDriver({ logger: silentLogger });
  let code: string;
  const spec = (argv: string[], over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    id: newId('scmp'), mounts: [{ host: code, sandbox: '/var/task' }], argv, env: { PATH }, cwd: '/var/task', limits: LIMITS, ...over,
  });
  before(() => {
    code = makeDir('thaw-scmp-code-', { 'probe.py': PROBE });
  });
  after(() => removeDir(code));

  test('the workload runs under a seccomp filter (Seccomp: 2), and so does pid 1', T, async () => {
    const r = await run(driver, spec(['/bin/sh', '-c', 'grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status /proc/1/status']));
    assert.equal(r.exit.code, 0, r.stderr);
    assert.match(r.stdout, /^\/proc\/self\/status:Seccomp:\s+2$/m);
    assert.match(r.stdout, /^\/proc\/self\/status:NoNewPrivs:\s+1$/m);
    // pid 1 belongs to another uid: its status is readable, and it is filtered too.
    assert.match(r.stdout, /^\/proc\/1\/status:Seccomp:\s+2$/m);
  });

  test('unshare -Ur gives no root in a new user namespace', T, async () => {
    const r = await run(driver, spec(['/bin/sh', '-c', 'unshare -Ur id -u && echo GOT-ROOT; unshare -m true && echo GOT-MOUNT-NS; echo done']));
    assert.doesNotMatch(r.stdout, /GOT-ROOT|GOT-MOUNT-NS/);
    assert.match(r.stdout, /done/);
    assert.match(r.stderr, /unshare failed: Operation not permitted/);
  });

  test('namespaces, tracing, bpf, perf, keyrings, mounts, userfaultfd, io_uring, kexec, modules and swap fail with EPERM; clone3 with ENOSYS', T, async () => {
    const args = NAMES.map((n) => `${n}=${syscallNumber(arch, n)}`);
    const r = await run(driver, spec(['/usr/bin/python3', 'probe.py', ...args]));
    assert.equal(r.exit.code, 0, r.stderr);
    const got = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]));
    for (const label of ['unshare_user', 'unshare_mount', 'clone_newuser', 'ptrace_traceme', 'bpf', 'perf_event_open', 'keyctl', 'add_key', 'request_key', 'mount', 'pivot_root', 'setns', 'userfaultfd', 'io_uring_setup', 'kexec_load', 'init_module', 'swapon']) {
      assert.equal(got[label], 'errno 1', `${label}: ${r.stdout}`);
    }
    assert.equal(got.clone3, 'errno 38');
    assert.equal(got.getpid, 'ok');
  });

  test('threads, fork, exec, pipes and sockets still work (python threads use clone3, then clone)', T, async () => {
    const script = [
      'import threading, subprocess, socket, os',
      't = threading.Thread(target=lambda: None); t.start(); t.join()',
      'print(subprocess.run(["/bin/echo", "child"], capture_output=True).stdout.decode().strip())',
      'a, b = socket.socketpair(); a.send(b"x"); print(b.recv(1).decode())',
      's = socket.socket(socket.AF_INET6); s.close()',
      'pid = os.fork()',
      'if pid == 0: os._exit(3)',
      'print("forked", os.waitpid(pid, 0)[1] >> 8)',
    ].join('\n');
    const r = await run(driver, spec(['/usr/bin/python3', '-c', script]));
    assert.equal(r.exit.code, 0, r.stderr);
    assert.equal(r.stdout, 'child\nx\nforked 3\n');
  });

  test('on the host: the workload process shows Seccomp 2 with one filter', T, async () => {
    const { sb, out } = await start(driver, spec(['/bin/sh', '-c', 'echo ready; exec sleep 60']));
    try {
      await out.waitFor('ready');
      const init = readFileSync(`/proc/${sb.pid}/task/${sb.pid}/children`, 'utf8').trim().split(' ')[0];
      const main = readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(' ')[0];
      const status = readFileSync(`/proc/${main}/status`, 'utf8');
      assert.match(status, /^Seccomp:\s+2$/m);
      assert.match(status, /^Seccomp_filters:\s+1$/m);
    } finally {
      await sb.destroy();
    }
  });
});
