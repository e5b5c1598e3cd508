import { ALLOWED, GENERIC, X64 } from './syscalls.js';

/**
 * The seccomp filter every sandboxed process runs under (pid 1 included), as a classic BPF program for
 * bwrap's `--seccomp FD`: the syscalls Lambda's runtimes use and nothing else.
 *
 *   arch ≠ this host's          → kill the process (another ABI's numbers mean other syscalls)
 *   x32 numbers (x86-64)        → EPERM
 *   ALLOWED                     → allow
 *   clone with a namespace flag → EPERM; other clones are allowed (fork, threads, vfork)
 *   clone3                      → ENOSYS, so libc falls back to clone, whose flags a filter can read
 *   socket                      → AF_UNIX, AF_INET, AF_INET6, AF_NETLINK only (else EAFNOSUPPORT)
 *   personality                 → the values Docker's profile allows
 *   anything else               → EPERM (keyctl, add_key, ptrace, bpf, perf_event_open, unshare, setns, mount,
 *                                 pivot_root, kexec_*, *_module, swapon, userfaultfd, io_uring_*, ...)
 *
 * The syscall number is found by a balanced tree of `jge` over the intervals of the number space that share one
 * outcome, so a syscall costs about ten comparisons, not a walk over the list.
 */

export type SeccompArch = 'x64' | 'arm64' | 'riscv64';

/** AUDIT_ARCH_* (linux/audit.h). */
const AUDIT_ARCH: Record<SeccompArch, number> = { x64: 0xc000003e, arm64: 0xc00000b7, riscv64: 0xc00000f3 };

export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

/** Namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (Docker's mask). */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const SOCKET_FAMILIES = [1, 2, 10, 16];
/** PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26, and 0xffffffff (query). */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/** seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args[6] (u64) from 16. Little-endian hosts only. */
const OFF_NR = 0;
const OFF_ARCH = 4;
const OFF_ARG0_LOW = 16;

// Classic BPF opcodes.
const LD_W_ABS = 0x20;
const JMP_JA = 0x05;
const JMP_JEQ_K = 0x15;
const JMP_JGE_K = 0x35;
const JMP_JSET_K = 0x45;
const RET_K = 0x06;
/** The kernel's limit on a classic BPF program (BPF_MAXINSNS). */
const MAX_INSNS = 4096;

export interface Insn {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

type Special = 'clone' | 'socket' | 'personality';
type Outcome = { ret: number } | { special: Special };

const errno = (e: number): number => SECCOMP_RET_ERRNO | e;

export function seccompArch(arch: string = process.arch): SeccompArch | undefined {
  return arch === 'x64' || arch === 'arm64' || arch === 'riscv64' ? arch : undefined;
}

/** What the filter decides for each syscall it names; every other number gets EPERM. */
function policy(arch: SeccompArch): Map<number, Outcome> {
  const table = arch === 'x64' ? X64 : GENERIC;
  const out = new Map<number, Outcome>();
  const set = (name: string, o: Outcome): void => {
    const nr = table[name];
    if (nr !== undefined) out.set(nr, o);
  };
  for (const name of ALLOWED) set(name, { ret: SECCOMP_RET_ALLOW });
  if (arch === 'x64') set('arch_prctl', { ret: SECCOMP_RET_ALLOW });
  if (arch === 'riscv64') set('riscv_flush_icache', { ret: SECCOMP_RET_ALLOW });
  set('clone', { special: 'clone' });
  set('socket', { special: 'socket' });
  set('personality', { special: 'personality' });
  set('clone3', { ret: errno(ENOSYS) });
  return out;
}

interface Interval {
  readonly start: number;
  readonly outcome: Outcome;
}

const sameOutcome = (a: Outcome, b: Outcome): boolean =>
  'ret' in a ? 'ret' in b && a.ret === b.ret : 'special' in b && a.special === b.special;

/** The number space [0, 2^32) cut into intervals of one outcome each, in order. */
function intervals(decisions: ReadonlyMap<number, Outcome>): Interval[] {
  const deny: Outcome = { ret: errno(EPERM) };
  const out: Interval[] = [];
  const push = (start: number, outcome: Outcome): void => {
    if (out[out.length - 1]?.start === start) out.pop();
    const last = out[out.length - 1];
    if (last === undefined || !sameOutcome(last.outcome, outcome)) out.push({ start, outcome });
  };
  for (const nr of [...decisions.keys()].sort((a, b) => a - b)) {
    push(nr, decisions.get(nr) as Outcome);
    push(nr + 1, deny);
  }
  if (out[0]?.start !== 0) out.unshift({ start: 0, outcome: deny });
  return out;
}

/** An instruction whose jump target is a label, resolved once the program is laid out. */
interface Pending extends Insn {
  readonly to?: Special;
}

const ins = (code: number, k: number, jt = 0, jf = 0): Pending => ({ code, jt, jf, k });

/** The lookup tree: `jge` on the first interval of the right half, falling through to the left half. */
function tree(iv: readonly Interval[]): Pending[] {
  if (iv.length === 1) {
    const o = (iv[0] as Interval).outcome;
    return ['ret' in o ? ins(RET_K, o.ret) : { ...ins(JMP_JA, 0), to: o.special }];
  }
  const mid = iv.length >> 1;
  const left = tree(iv.slice(0, mid));
  const right = tree(iv.slice(mid));
  const at = (iv[mid] as Interval).start;
  if (left.length <= 255) return [ins(JMP_JGE_K, at, left.length, 0), ...left, ...right];
  // Conditional jumps reach 255 instructions at most: go through an unconditional one (32-bit offset).
  return [ins(JMP_JGE_K, at, 0, 1), ins(JMP_JA, left.length), ...left, ...right];
}

/** Allow when arg0's low word is one of `values`, else return `otherwise`. */
function oneOf(values: readonly number[], otherwise: number): Pending[] {
  const n = values.length;
  return [
    ins(LD_W_ABS, OFF_ARG0_LOW),
    // The i-th test jumps over the remaining tests and the refusal, to the allow.
    ...values.map((v, i) => ins(JMP_JEQ_K, v, n - i, 0)),
    ins(RET_K, otherwise),
    ins(RET_K, SECCOMP_RET_ALLOW),
  ];
}

const SPECIALS: Record<Special, Pending[]> = {
  clone: [ins(LD_W_ABS, OFF_ARG0_LOW), ins(JMP_JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1), ins(RET_K, errno(EPERM)), ins(RET_K, SECCOMP_RET_ALLOW)],
  socket: oneOf(SOCKET_FAMILIES, errno(EAFNOSUPPORT)),
  personality: oneOf(PERSONALITIES, errno(EPERM)),
};

/** The filter as instructions. */
export function seccompInstructions(arch: SeccompArch): Insn[] {
  const prog: Pending[] = [
    ins(LD_W_ABS, OFF_ARCH),
    ins(JMP_JEQ_K, AUDIT_ARCH[arch], 1, 0),
    ins(RET_K, SECCOMP_RET_KILL_PROCESS),
    ins(LD_W_ABS, OFF_NR),
  ];
  // x32 syscalls arrive with x86-64's audit arch and __X32_SYSCALL_BIT set.
  if (arch === 'x64') prog.push(ins(JMP_JGE_K, 0x40000000, 0, 1), ins(RET_K, errno(EPERM)));
  prog.push(...tree(intervals(policy(arch))));
  const labels = new Map<Special, number>();
  for (const s of Object.keys(SPECIALS) as Special[]) {
    labels.set(s, prog.length);
    prog.push(...SPECIALS[s]);
  }
  if (prog.length > MAX_INSNS) throw new Error(`seccomp filter: ${prog.length} instructions`);
  return prog.map((p, i) => (p.to === undefined ? { code: p.code, jt: p.jt, jf: p.jf, k: p.k } : { code: p.code, jt: 0, jf: 0, k: (labels.get(p.to) as number) - (i + 1) }));
}

/** struct sock_filter[], in the host's byte order, as bwrap's --seccomp reads it. */
export function seccompProgram(arch: SeccompArch): Buffer {
  const insns = seccompInstructions(arch);
  const buf = Buffer.alloc(insns.length * 8);
  insns.forEach((x, i) => {
    buf.writeUInt16LE(x.code, i * 8);
    buf.writeUInt8(x.jt, i * 8 + 2);
    buf.writeUInt8(x.jf, i * 8 + 3);
    buf.writeUInt32LE(x.k >>> 0, i * 8 + 4);
  });
  return buf;
}

/** Syscall number of `name` on `arch`, for tests and diagnostics. */
export function syscallNumber(arch: SeccompArch, name: string): number | undefined {
  return (arch === 'x64' ? X64 : GENERIC)[name];
}
