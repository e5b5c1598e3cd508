import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CLONE_NAMESPACE_FLAGS, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, seccompInstructions, seccompProgram,
  syscallNumber, type Insn, type SeccompArch,
} from '../../src/sandbox/seccomp/filter.js';
import { ALLOWED } from '../../src/sandbox/seccomp/syscalls.js';

/** A classic BPF interpreter over struct seccomp_data, enough for what the filter uses. */
function evaluate(prog: readonly Insn[], data: { nr: number; arch: number; args?: readonly number[] }): number {
  const word = (off: number): number => {
    if (off === 0) return data.nr >>> 0;
    if (off === 4) return data.arch >>> 0;
    if (off >= 16 && off < 64 && off % 8 === 0) return (data.args?.[(off - 16) / 8] ?? 0) >>> 0;
    if (off >= 16 && off < 64) return 0; // high words
    throw new Error(`load at ${off}`);
  };
  let a = 0;
  for (let pc = 0, steps = 0; pc < prog.length; pc++, steps++) {
    assert.ok(steps < 100, 'a syscall takes at most a few dozen instructions');
    const x = prog[pc] as Insn;
    switch (x.code) {
      case 0x20: a = word(x.k); break;
      case 0x05: pc += x.k; break;
      case 0x15: pc += a === x.k >>> 0 ? x.jt : x.jf; break;
      case 0x35: pc += a >= x.k >>> 0 ? x.jt : x.jf; break;
      case 0x45: pc += (a & x.k) !== 0 ? x.jt : x.jf; break;
      case 0x06: return x.k >>> 0;
      default: throw new Error(`opcode ${x.code.toString(16)}`);
    }
  }
  throw new Error('fell off the end of the program');
}

const ARCH = { x64: 0xc000003e, arm64: 0xc00000b7, riscv64: 0xc00000f3 } as const;
const EPERM = (SECCOMP_RET_ERRNO | 1) >>> 0;

for (const arch of ['x64', 'arm64', 'riscv64'] as SeccompArch[]) {
  describe(`seccomp filter (${arch})`, () => {
    const prog = seccompInstructions(arch);
    const call = (name: string, args: number[] = []): number => {
      const nr = syscallNumber(arch, name);
      assert.notEqual(nr, undefined, name);
      return evaluate(prog, { nr: nr as number, arch: ARCH[arch], args });
    };

    test('every allowed syscall passes, with its number resolved', () => {
      let n = 0;
      for (const name of ALLOWED) {
        if (syscallNumber(arch, name) === undefined) continue;
        assert.equal(call(name), SECCOMP_RET_ALLOW, name);
        n++;
      }
      assert.ok(n > 250, `${n} allowed`);
    });

    test('keyrings, tracing, bpf, namespaces, mounts, modules, kexec, swap, userfaultfd and io_uring are refused with EPERM', () => {
      for (const name of ['keyctl', 'add_key', 'request_key', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'bpf', 'perf_event_open',
        'unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'open_tree', 'move_mount', 'fsopen', 'mount_setattr', 'chroot',
        'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'swapon', 'swapoff', 'userfaultfd',
        'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'reboot', 'acct', 'syslog']) {
        assert.equal(call(name), EPERM, name);
      }
    });

    test('clone: threads and fork pass, any namespace flag is refused; clone3 answers ENOSYS', () => {
      const SIGCHLD = 17;
      assert.equal(call('clone', [0x3d0f00]), SECCOMP_RET_ALLOW, 'pthread_create flags');
      assert.equal(call('clone', [0x01200000 | SIGCHLD]), SECCOMP_RET_ALLOW, 'fork flags');
      assert.equal(call('clone', [0x4100 | SIGCHLD]), SECCOMP_RET_ALLOW, 'vfork flags');
      for (let bit = 0; bit < 32; bit++) {
        const flag = 2 ** bit;
        if ((CLONE_NAMESPACE_FLAGS & flag) === 0) continue;
        assert.equal(call('clone', [flag | SIGCHLD]), EPERM, `flag ${flag.toString(16)}`);
      }
      assert.equal(call('clone', [0x10000000]), EPERM, 'CLONE_NEWUSER');
      assert.equal(call('clone3'), (SECCOMP_RET_ERRNO | 38) >>> 0);
    });

    test('socket: unix, inet, inet6 and netlink only', () => {
      for (const family of [1, 2, 10, 16]) assert.equal(call('socket', [family, 1, 0]), SECCOMP_RET_ALLOW, String(family));
      for (const family of [17, 38, 40, 0, 3]) assert.equal(call('socket', [family, 1, 0]), (SECCOMP_RET_ERRNO | 97) >>> 0, String(family));
    });

    test('personality: only the harmless values', () => {
      assert.equal(call('personality', [0xffffffff]), SECCOMP_RET_ALLOW);
      assert.equal(call('personality', [0]), SECCOMP_RET_ALLOW);
      assert.equal(call('personality', [0x0040000]), EPERM, 'ADDR_NO_RANDOMIZE');
    });

    test('unknown numbers are refused; another architecture kills the process', () => {
      for (const nr of [1000, 0x3fffffff, 0xffffffff]) assert.equal(evaluate(prog, { nr, arch: ARCH[arch] }), EPERM, String(nr));
      const other = arch === 'x64' ? ARCH.arm64 : ARCH.x64;
      assert.equal(evaluate(prog, { nr: 0, arch: other }), SECCOMP_RET_KILL_PROCESS);
      assert.equal(evaluate(prog, { nr: 0, arch: 0x40000003 }), SECCOMP_RET_KILL_PROCESS, 'i386');
    });

    test('the program fits the kernel limit and encodes as 8-byte sock_filters', () => {
      const buf = seccompProgram(arch);
      assert.equal(buf.length, prog.length * 8);
      assert.ok(prog.length < 1000, `${prog.length} instructions`);
      assert.equal(buf.readUInt16LE(0), 0x20);
      assert.equal(buf.readUInt32LE(12), ARCH[arch]);
    });
  });
}

test('x86-64: x32 syscall numbers are refused', () => {
  const prog = seccompInstructions('x64');
  assert.equal(evaluate(prog, { nr: 0x40000000 + 1, arch: ARCH.x64 }), EPERM);
  assert.equal(evaluate(prog, { nr: 0x40000000 + 39, arch: ARCH.x64 }), EPERM, 'x32 getpid');
});
