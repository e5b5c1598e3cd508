import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { chmod, chown, lstat, stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { dirname } from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThawError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { detectCgroups, type Cgroup, type CgroupManager } from './cgroups.js';
import type { EphemeralDisk, EphemeralStorage } from './ephemeral.js';
import { RUNTIME_API_SOCKET } from './driver.js';
import { IdentityPool, type SandboxIdentity } from './identity.js';
import { seccompArch, seccompProgram } from './seccomp/filter.js';
import type { SandboxLimits, ExitInfo, Mount, Sandbox, SandboxDriver, SandboxSpec } from './driver.js';
import { spawnSandboxProcess, validateLaunch, validateSpec, vmHwmBytes } from './process.js';

/**
 * The namespaces driver: bubblewrap, run as root, builds a fresh pid, mount, ipc, uts, cgroup and network
 * namespace with a read-only view of the system (/usr and a minimal /etc), the spec's mounts read-only, a
 * size-capped private /tmp, and nothing else of the host.
 *
 * Process tree (host view):
 *
 *   node ─ sh (joins the cgroup, exec) ─ bwrap ─ [pid 1] perl "thaw-init" ─ argv (the environment's uid)
 *                                                                       └─ TCP relay (runtimeApiTcp only)
 *
 * The workload runs as an unprivileged uid of its own (Lambda's sbx_user1051 by name; a host uid leased from
 * an IdentityPool for this sandbox alone, so environments share no keyring, process count or signals) with
 * every capability, the bounding set included, cleared: bwrap run by root keeps uid 0 in the sandbox, and uid 0
 * even without capabilities can write host sysctls through /proc/sys. Everything from pid 1 down runs under the
 * seccomp filter of seccomp/filter.ts (bwrap --seccomp). The perl init (pid 1, ~2 ms) closes inherited
 * descriptors, opens the Runtime API TCP relay for runtimeApiTcp, reaps every orphan, drops privileges, sets
 * RLIMIT_NOFILE to Lambda's 1,024 and RLIMIT_NPROC to the pids limit, and runs argv with exactly spec.env
 * (received over a pipe, so no secret shows in a host `ps`), and reports argv's raw wait status over a pipe:
 * bwrap itself folds "killed by signal N" into exit code 128+N.
 *
 * The environment's cgroup holds bwrap and thaw-init too (and the relay: one process, plus two per open
 * connection), so they count against limits.pids and limits.memoryBytes: about 2 processes and 5 MB.
 *
 * Host files the sandbox sees must be readable by that uid (mount roots o+rx, files o+r); their parent
 * directories need not be, bwrap binds them as root. The Runtime API socket is made connectable for the
 * sandbox user (chmod 0666) by start().
 */

export const RUNTIME_API_TCP_PORT = 9001;
/** AWS_LAMBDA_RUNTIME_API value for sandboxes started with runtimeApiTcp. */
export const RUNTIME_API_TCP_ADDRESS = `127.0.0.1:${RUNTIME_API_TCP_PORT}`;

export interface NamespacesDriverOptions {
  readonly logger?: Logger;
  /** A cgroup manager, null to run without cgroups (no limits), or undefined to detect them on first start. */
  readonly cgroups?: CgroupManager | null;
  /** Where each sandbox's uid and gid come from (default: a pool over DEFAULT_UID_BASE, shared by the process). */
  readonly identities?: IdentityPool;
  /**
   * Load the seccomp filter (default true). Off only in tests that show what distinct uids alone keep apart.
   */
  readonly seccomp?: boolean;
  readonly bwrap?: string;
  readonly perl?: string;
  /** Disk-backed /tmp filesystems (Lambda's EphemeralStorage); without it /tmp is a tmpfs charged to the memory cgroup. */
  readonly ephemeral?: EphemeralStorage;
}

/** What runtimes need from /etc; everything else of the host's /etc stays out. */
const ETC = [
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/pki',
  '/etc/crypto-policies',
  '/etc/localtime',
  '/etc/timezone',
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/host.conf',
  '/etc/gai.conf',
  '/etc/nsswitch.conf',
  '/etc/alternatives',
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
  '/etc/os-release',
];
/** Top-level system paths: bound read-only, or recreated as the same symlink on merged-/usr hosts. */
const SYSTEM = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/** Sandbox paths that already exist (read-only or special) when mounts are added. */
const PROVIDED = ['/usr', '/etc', '/proc', '/dev', '/tmp', ...SYSTEM];

/** fds of the spawned chain (0-2 are stdio). */
const FD_ARGS = 3;
const FD_ENV = 4;
const FD_STATUS = 5;
const FD_PASSWD = 6;
const FD_GROUP = 7;
const FD_SECCOMP = 8;
/** Lambda's descriptor limit (soft and hard) for the workload. */
export const NOFILE_LIMIT = 1024;

/**
 * pid 1 inside the sandbox: root with only CAP_SETUID, CAP_SETGID and CAP_SETPCAP, out of the workload's
 * reach (another uid, and signals to a namespace's init are dropped). @ARGV: uid, gid, the prctl, capset and
 * prlimit64 syscall numbers, RLIMIT_NOFILE and RLIMIT_NPROC for the workload, the Runtime API socket for the TCP
 * relay ('' = none), '1' for a deferred start ('' = not), the working directory, then argv (none when deferred).
 * As pid 1 it is the parent of every orphan of the namespace, and its wait loop reaps them all.
 * fd 4: the environment, NUL-separated NAME=value, then (deferred) an empty item and argv, NUL-separated; the
 * init blocks reading it until the host closes it, which is how a deferred sandbox waits. fd 5: status lines to
 * the host ("waiting" for a deferred start, "pid N", "status W", "fail reason"). argv is held back until
 * "pid N" is written, so the host always learns its pid first.
 *
 * The relay listens on 127.0.0.1:9001 before argv is forked, so the port is ready by construction (polling
 * /proc/net/tcp costs ~10 ms on a large host: the kernel walks the whole TCP hash for each read). It copies
 * bytes with two processes per connection, one per direction. Socket constants are Linux's generic ones.
 */
const INIT = String.raw`
$0 = 'thaw-init';
my ($uid, $gid, $prctl, $capset, $prlimit, $nofile, $nproc, $sock, $deferred, $cwd) = splice @ARGV, 0, 10;
opendir my $d, '/proc/self/fd' or die "thaw-init: /proc/self/fd: $!\n";
my @fds = grep { /^\d+$/ && $_ > 2 && $_ != 4 && $_ != 5 } readdir $d;
closedir $d;
for my $fd (@fds) { open(my $h, '<&=', $fd) and close $h }
open my $st, '>&=', 5 or die "thaw-init: status: $!\n";
select((select($st), $| = 1)[0]);
sub fail { print $st "fail $_[0]\n"; exit 1 }
print $st "waiting\n" if $deferred;
open my $in, '<&=', 4 or fail("env: $!");
my @parts = split /\0/, do { local $/; <$in> } // '', -1;
close $in;
my %env;
while (@parts && $parts[0] ne '') { my $kv = shift @parts; $env{$1} = $2 if $kv =~ /^([^=]*)=(.*)$/s }
shift @parts;
if ($deferred) {
  pop @parts if @parts && $parts[-1] eq '';
  fail('no argv') if !@parts;
  @ARGV = @parts;
  chdir $cwd or fail("chdir $cwd: $!");
}
sub pump {
  my ($from, $to) = @_;
  while (1) {
    my $n = sysread $from, my $buf, 65536;
    last if !$n;
    for (my $off = 0; $off < $n;) { my $w = syswrite $to, $buf, $n - $off, $off; return if !defined $w; $off += $w }
  }
  shutdown $to, 1;
}
if ($sock ne '') {
  socket my $ls, 2, 1, 0 or fail("socket: $!");
  setsockopt $ls, 1, 2, pack('i', 1);
  bind $ls, pack('S n C4 x8', 2, 9001, 127, 0, 0, 1) or fail("bind 127.0.0.1:9001: $!");
  listen $ls, 128 or fail("listen: $!");
  my $p = fork // fail("fork: $!");
  if (!$p) {
    close $st; $SIG{CHLD} = 'IGNORE';
    open STDIN, '<', '/dev/null'; open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
    while (1) {
      accept my $c, $ls or next;
      my $h = fork;
      if (!defined $h || $h) { close $c; next }
      close $ls;
      socket my $u, 1, 1, 0 or exit 1;
      connect $u, pack('S a108', 1, $sock) or exit 1;
      my $back = fork // exit 1;
      if (!$back) { pump($u, $c); exit 0 }
      pump($c, $u); exit 0;
    }
  }
  close $ls;
}
pipe my $go_r, my $go_w or fail("pipe: $!");
my $c = fork // fail("fork: $!");
if (!$c) {
  close $st; close $go_w; sysread $go_r, my $go, 1; close $go_r;
  # Drop to the sandbox user for good: bounding set, groups, gid, uid, then ambient and all other capabilities.
  syscall $prctl, 24, $_, 0, 0, 0 for 0 .. 63;
  $) = "$gid $gid"; $( = $gid; ($<, $>) = ($uid, $uid);
  die "thaw-init: cannot switch to uid $uid\n" unless $< == $uid && $> == $uid && $( == $gid && $) == $gid;
  syscall($prctl, 47, 4, 0, 0, 0) == 0 or die "thaw-init: ambient capabilities: $!\n";
  my ($hdr, $caps) = (pack('LL', 0x20080522, 0), pack('L6', (0) x 6));
  syscall($capset, $hdr, $caps) == 0 or die "thaw-init: capset: $!\n";
  # RLIMIT_NOFILE (7) and RLIMIT_NPROC (6), soft and hard; without CAP_SYS_RESOURCE they cannot be raised again.
  syscall($prlimit, 0, 7, pack('QQ', $nofile, $nofile), 0) == 0 or die "thaw-init: RLIMIT_NOFILE: $!\n";
  syscall($prlimit, 0, 6, pack('QQ', $nproc, $nproc), 0) == 0 or die "thaw-init: RLIMIT_NPROC: $!\n";
  %ENV = %env;
  exec { $ARGV[0] } @ARGV;
  print STDERR "thaw: cannot exec $ARGV[0]: $!\n";
  exit 127;
}
close $go_r;
print $st "pid $c\n";
close $go_w;
while ((my $w = wait) != -1) {
  next if $w != $c;
  print $st "status $?\n";
  exit(($? & 127) ? 128 + ($? & 127) : $? >> 8);
}
fail('lost the main process');
`;

/** prctl and capset syscall numbers, for the init's privilege drop. */
const SYSCALLS: Partial<Record<string, { prctl: number; capset: number; prlimit: number }>> = {
  x64: { prctl: 157, capset: 126, prlimit: 302 },
  // The generic syscall table.
  arm64: { prctl: 167, capset: 91, prlimit: 261 },
  riscv64: { prctl: 167, capset: 91, prlimit: 261 },
};

/** One pool per process unless a driver is given its own: leases are per host anyway. */
let sharedIdentities: IdentityPool | undefined;

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** Decode a raw waitpid() status. */
export function decodeWaitStatus(raw: number): { code: number | null; signal: NodeJS.Signals | null } {
  const sig = raw & 0x7f;
  if (sig === 0) return { code: (raw >> 8) & 0xff, signal: null };
  return { code: null, signal: SIGNAL_NAMES.get(sig) ?? null };
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter((s) => s !== '').map(Number);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !noChildrenFile()) return [];
  }
  // Kernel without CONFIG_PROC_CHILDREN: scan /proc for the parent pid.
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // Gone.
    }
  }
  return out;
}

let childrenFileMissing: boolean | undefined;
function noChildrenFile(): boolean {
  if (childrenFileMissing === undefined) {
    try {
      readFileSync(`/proc/${process.pid}/task/${process.pid}/children`);
      childrenFileMissing = false;
    } catch {
      childrenFileMissing = true;
    }
  }
  return childrenFileMissing;
}

/** The innermost pid (as its own pid namespace numbers it) of a host pid. */
function nsPidOf(pid: number): number | undefined {
  try {
    const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    const last = m?.[1]?.trim().split(/\s+/).pop();
    return last === undefined ? undefined : Number(last);
  } catch {
    return undefined;
  }
}

/** Ancestors of an absolute path, shallowest first, without '/'. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let d = dirname(path); d !== '/' && d !== '.'; d = dirname(d)) out.unshift(d);
  return out;
}

function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix + '/');
}

export class NamespacesDriver implements SandboxDriver {
  readonly name = 'namespaces' as const;
  readonly isolates = true;
  readonly runtimeApiTransport = 'unix' as const;
  readonly canDefer = true;
  private readonly log: Logger;
  private cgroups: Promise<CgroupManager | null> | undefined;
  private readonly identities: IdentityPool;
  private readonly bin: { bwrap: string; perl: string };
  private readonly syscalls: { prctl: number; capset: number; prlimit: number };
  /** The seccomp filter (bwrap --seccomp), or null when turned off. */
  private readonly filter: Buffer | null;
  /** bwrap arguments for the system part of the tree, computed once from the host's layout. */
  private readonly systemArgs: readonly string[];
  private readonly ephemeral: EphemeralStorage | undefined;

  constructor(opts: NamespacesDriverOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    if (opts.cgroups !== undefined) this.cgroups = Promise.resolve(opts.cgroups);
    this.identities = opts.identities ?? (sharedIdentities ??= new IdentityPool());
    this.bin = { bwrap: opts.bwrap ?? '/usr/bin/bwrap', perl: opts.perl ?? '/usr/bin/perl' };
    const syscalls = SYSCALLS[process.arch];
    const arch = seccompArch();
    if (syscalls === undefined || arch === undefined) throw new ThawError('Service', `namespaces sandbox not supported on ${process.arch}`);
    this.syscalls = syscalls;
    this.filter = opts.seccomp === false ? null : seccompProgram(arch);
    this.systemArgs = systemArgs();
    this.ephemeral = opts.ephemeral;
  }

  resolve(sandboxPath: string, _mounts: readonly Mount[]): string {
    return sandboxPath;
  }

  async start(spec: SandboxSpec): Promise<Sandbox> {
    validateSpec(spec);
    await this.checkMounts(spec);
    if (spec.runtimeApiTcp === true && spec.runtimeApiSocket === undefined) {
      throw new ThawError('Service', `sandbox ${spec.id}: runtimeApiTcp needs runtimeApiSocket`);
    }
    if (spec.runtimeApiSocket !== undefined) {
      try {
        // connect() needs write permission on the socket inode, and the workload is not root.
        await chmod(spec.runtimeApiSocket, 0o666);
      } catch (err) {
        throw new ThawError('Service', `sandbox ${spec.id}: runtime API socket unusable`, { path: spec.runtimeApiSocket }, { cause: err });
      }
    }

    this.cgroups ??= detectCgroups({ logger: this.log });
    const manager = await this.cgroups;
    const id = this.identities.acquire();
    let cgroup: Cgroup | null = null;
    let tmp: EphemeralDisk | undefined;
    try {
      await ownWritableMounts(spec, id);
      tmp = await this.ephemeral?.create(spec.id, spec.limits.tmpBytes, { uid: id.uid, gid: id.gid });
      cgroup = manager === null ? null : await manager.create(spec.id, spec.limits);
    } catch (err) {
      await tmp?.release();
      await disownWritableMounts(spec);
      id.release();
      throw err;
    }

    const command = [
      this.bin.bwrap,
      '--args',
      String(FD_ARGS),
      this.bin.perl,
      '-e',
      INIT,
      String(id.uid),
      String(id.gid),
      String(this.syscalls.prctl),
      String(this.syscalls.capset),
      String(this.syscalls.prlimit),
      String(NOFILE_LIMIT),
      String(Math.max(1, Math.floor(spec.limits.pids))),
      spec.runtimeApiTcp === true ? RUNTIME_API_SOCKET : '',
      spec.deferred === true ? '1' : '',
      spec.cwd,
      ...spec.argv,
    ];
    const [file, ...args] =
      cgroup === null ? command : ['/bin/sh', '-c', `${cgroup.joinScript()} && exec "$@"`, 'thaw-sandbox', ...command];
    let child: ChildProcess;
    try {
      child = await spawnSandboxProcess(spec.id, cgroup, file as string, args, {
        env: {},
        cwd: '/',
        stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
      });
    } catch (err) {
      await cgroup?.remove();
      await tmp?.release();
      await disownWritableMounts(spec);
      id.release();
      throw err;
    }
    const sb = new NamespacesSandbox(spec.id, child, cgroup, this.log, id, () => disownWritableMounts(spec), tmp);
    feed(child, FD_ARGS, nul(this.bwrapArgs(spec, tmp?.mountPoint)));
    if (this.filter !== null) feed(child, FD_SECCOMP, this.filter);
    if (spec.deferred !== true) feed(child, FD_ENV, workload(spec.env));
    feed(
      child,
      FD_PASSWD,
      'root:x:0:0:root:/root:/usr/sbin/nologin\n' +
        `sbx_user1051:x:${id.uid}:${id.gid}::/tmp:/usr/sbin/nologin\n` +
        'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
    );
    feed(child, FD_GROUP, `root:x:0:\nsbx_user1051:x:${id.gid}:\nnogroup:x:65534:\n`);

    const failure = await (spec.deferred === true ? sb.waiting : sb.ready);
    if (failure !== undefined) {
      const stderr = collect(sb.stderr);
      await sb.destroy();
      throw new ThawError('Service', `sandbox ${spec.id} failed to start: ${failure}`, { stderr: await stderr });
    }
    // bwrap has bound /tmp: the host's view of it goes, the sandbox keeps it until its last process ends.
    void tmp?.detach();
    return sb;
  }

  /** Mount sources must exist; warn when the unprivileged sandbox user will not be able to read them. */
  private async checkMounts(spec: SandboxSpec): Promise<void> {
    for (const m of spec.mounts) {
      let st;
      try {
        st = await stat(m.host);
      } catch (err) {
        throw new ThawError('Service', `sandbox ${spec.id}: mount source missing`, { mount: m }, { cause: err });
      }
      const need = st.isDirectory() ? 0o005 : 0o004;
      if ((st.mode & need) !== need) {
        this.log.warn({ sandbox: spec.id, mount: m, mode: (st.mode & 0o7777).toString(8) }, 'sandbox user cannot read this mount');
      }
    }
  }

  private bwrapArgs(spec: SandboxSpec, tmp: string | undefined): string[] {
    const a = [
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-net',
      '--unshare-cgroup-try',
      '--die-with-parent',
      '--new-session',
      '--as-pid-1',
      '--hostname',
      'localhost',
      // Only what the init needs to switch the workload to the sandbox uid; the workload gets none.
      '--cap-drop',
      'ALL',
      '--cap-add',
      'CAP_SETUID',
      '--cap-add',
      'CAP_SETGID',
      '--cap-add',
      'CAP_SETPCAP',
      '--clearenv',
      ...(this.filter === null ? [] : ['--seccomp', String(FD_SECCOMP)]),
      ...this.systemArgs,
      '--perms',
      '0444',
      '--ro-bind-data',
      String(FD_PASSWD),
      '/etc/passwd',
      '--perms',
      '0444',
      '--ro-bind-data',
      String(FD_GROUP),
      '/etc/group',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      ...(tmp === undefined ? ['--perms', '1777', '--size', String(Math.floor(spec.limits.tmpBytes)), '--tmpfs', '/tmp'] : ['--bind', tmp, '/tmp']),
    ];
    // bwrap creates missing parents of a mount point with mode 0700; the sandbox user must traverse them.
    const targets = [...spec.mounts.map((m) => m.sandbox), ...(spec.runtimeApiSocket === undefined ? [] : [RUNTIME_API_SOCKET])];
    const dirs = new Set<string>();
    for (const t of targets) {
      for (const d of ancestors(t)) if (!PROVIDED.some((p) => under(d, p))) dirs.add(d);
    }
    for (const d of [...dirs].sort((x, y) => x.split('/').length - y.split('/').length)) a.push('--perms', '0755', '--dir', d);
    // Parents before children, so /opt is mounted before /opt/extensions.
    const mounts = [...spec.mounts].sort((x, y) => x.sandbox.split('/').length - y.sandbox.split('/').length);
    for (const m of mounts) a.push(m.writable === true ? '--bind' : '--ro-bind', m.host, m.sandbox);
    if (spec.runtimeApiSocket !== undefined) a.push('--ro-bind', spec.runtimeApiSocket, RUNTIME_API_SOCKET);
    a.push('--remount-ro', '/', '--chdir', spec.cwd);
    return a;
  }
}

/**
 * A writable mount (platform jobs only) is a directory the host made for the job: it is given to the sandbox's
 * uid for the job's lifetime, its root only, never following a symlink, and taken back by disownWritableMounts.
 */
async function ownWritableMounts(spec: SandboxSpec, id: SandboxIdentity): Promise<void> {
  for (const m of spec.mounts) {
    if (m.writable !== true) continue;
    const st = await lstat(m.host);
    if (!st.isDirectory()) throw new ThawError('Service', `sandbox ${spec.id}: writable mount is not a directory`, { mount: m });
    await chown(m.host, id.uid, id.gid);
  }
}

async function disownWritableMounts(spec: SandboxSpec): Promise<void> {
  for (const m of spec.mounts) {
    if (m.writable !== true) continue;
    try {
      const st = await lstat(m.host);
      if (st.isDirectory()) await chown(m.host, 0, 0);
    } catch {
      // Removed meanwhile.
    }
  }
}

function systemArgs(): string[] {
  const a = ['--ro-bind', '/usr', '/usr'];
  for (const p of SYSTEM) {
    try {
      const st = lstatSync(p);
      if (st.isSymbolicLink()) a.push('--symlink', readlinkSync(p), p);
      else if (st.isDirectory()) a.push('--ro-bind', p, p);
    } catch {
      // Not on this host.
    }
  }
  a.push('--perms', '0755', '--dir', '/etc');
  for (const p of ETC) a.push('--ro-bind-try', p, p);
  return a;
}

const nul = (items: readonly string[]): string => items.map((s) => `${s}\0`).join('');

/** What the init reads from FD_ENV: the environment, and for a deferred start an empty item and argv. */
function workload(env: Readonly<Record<string, string>>, argv?: readonly string[]): string {
  const vars = nul(Object.entries(env).map(([k, v]) => `${k}=${v}`));
  return argv === undefined ? vars : `${vars}\0${nul(argv)}`;
}

function feed(child: ChildProcess, fd: number, data: string | Buffer): void {
  const s = (child.stdio as readonly unknown[])[fd] as Writable | null | undefined;
  if (s === null || s === undefined) return;
  // bwrap may fail before reading; the start() failure path reports that, not an EPIPE.
  s.on('error', () => undefined);
  s.end(data);
}

/** The first 4 KiB a stream still produces, within a few seconds. */
async function collect(stream: Readable): Promise<string> {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    if (text.length < 4096) text += chunk;
  });
  await Promise.race([once(stream, 'end').catch(() => undefined), sleep(2000, undefined, { ref: false })]);
  return text.slice(0, 4096);
}

class NamespacesSandbox implements Sandbox {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly exited: Promise<ExitInfo>;
  /** Resolves undefined once argv runs, or with the reason it never will. */
  readonly ready: Promise<string | undefined>;
  /** For a deferred start: resolves undefined once the init waits for argv, or with the reason it never will. */
  readonly waiting: Promise<string | undefined>;
  private launched = false;
  /** Host pids of pid 1 and of argv, found once argv runs. */
  private init: number | undefined;
  private main: number | undefined;
  private done = false;
  private hwm = 0;
  private status: number | undefined;
  private destroyed: Promise<void> | undefined;

  constructor(
    readonly id: string,
    private readonly child: ChildProcess,
    private readonly cgroup: Cgroup | null,
    private readonly log: Logger,
    private readonly identity: SandboxIdentity,
    private readonly disown: () => Promise<void>,
    private readonly tmp?: EphemeralDisk,
  ) {
    const { stdout, stderr } = child;
    const status = (child.stdio as readonly unknown[])[FD_STATUS] as Readable | null | undefined;
    if (child.pid === undefined || stdout === null || stderr === null || status === null || status === undefined) {
      throw new ThawError('Service', `sandbox ${id} failed to spawn`);
    }
    this.pid = child.pid;
    // Node discards child output nobody listens to once the child exits; these keep it for the caller.
    this.stdout = stdout.pipe(new PassThrough());
    this.stderr = stderr.pipe(new PassThrough());
    child.on('error', (err) => log.warn({ sandbox: id, err }, 'sandbox process error'));

    let signalReady: (failure: string | undefined) => void = () => undefined;
    this.ready = new Promise((resolve) => (signalReady = resolve));
    let signalWaiting: (failure: string | undefined) => void = () => undefined;
    this.waiting = new Promise((resolve) => (signalWaiting = resolve));
    const statusClosed = new Promise<void>((resolve) => {
      let buf = '';
      status.setEncoding('utf8');
      status.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > 65536) buf = buf.slice(-4096); // bounded, whatever arrives
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const pid = /^pid (\d+)$/.exec(line);
          const st = /^status (\d+)$/.exec(line);
          if (pid !== null && this.main === undefined && this.init === undefined) {
            this.locate(Number(pid[1]));
            signalReady(undefined);
          } else if (st !== null) {
            this.status = Number(st[1]) & 0xffff;
          } else if (line === 'waiting') {
            signalWaiting(undefined);
          } else if (line.startsWith('fail ')) {
            signalWaiting(line.slice(5, 500));
            signalReady(line.slice(5, 500));
          }
        }
      });
      status.on('error', () => undefined);
      status.once('close', () => resolve());
    });
    this.exited = (async () => {
      const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      signalWaiting(`sandbox exited early (code ${code}, signal ${signal})`);
      signalReady(`sandbox exited early (code ${code}, signal ${signal})`);
      return this.finish(code, signal, statusClosed);
    })();
  }

  /** Map argv's pid inside the namespace to its host pid: a child of pid 1, itself bwrap's child. */
  private locate(nsPid: number): void {
    this.init = childrenOf(this.pid)[0];
    if (this.init === undefined) return;
    this.main = childrenOf(this.init).find((p) => nsPidOf(p) === nsPid);
    if (this.main === undefined) this.log.warn({ sandbox: this.id, nsPid }, 'cannot find the sandbox main process');
  }

  private async finish(
    code: number | null,
    signal: NodeJS.Signals | null,
    statusClosed: Promise<void>,
  ): Promise<ExitInfo> {
    this.done = true;
    try {
      // pid 1 is gone, so the kernel is tearing the namespace down; make sure of it.
      if (this.cgroup !== null) await this.cgroup.killAll();
      else if (this.init !== undefined) process.kill(this.init, 'SIGKILL');
    } catch {
      // Already gone.
    }
    await Promise.race([statusClosed, sleep(5000, undefined, { ref: false })]);
    const oomKilled = this.cgroup?.oomKilled() ?? false;
    this.cgroup?.maxMemoryBytes();
    if (this.status !== undefined) return { ...decodeWaitStatus(this.status), oomKilled };
    // No report from init (it was killed): bwrap's own status, where 128+N means signal N.
    if (code !== null && code > 128 && SIGNAL_NAMES.has(code - 128)) {
      return { code: null, signal: SIGNAL_NAMES.get(code - 128) ?? null, oomKilled };
    }
    return { code, signal, oomKilled };
  }

  get uid(): number {
    return this.identity.uid;
  }

  freeze(): boolean {
    return !this.done && this.cgroup !== null && this.cgroup.freeze();
  }

  thaw(): void {
    this.cgroup?.thaw();
  }

  cpuUsageNs(): number | undefined {
    return this.cgroup?.cpuUsageNs();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.done) return;
    // A frozen process would only see the signal once thawed.
    this.cgroup?.thaw();
    const target = this.main ?? (signal === 'SIGKILL' ? this.init : undefined);
    if (target === undefined) {
      this.log.warn({ sandbox: this.id, signal }, 'no sandbox process to signal');
      return;
    }
    try {
      process.kill(target, signal);
    } catch {
      // Exited meanwhile.
    }
  }

  async updateLimits(limits: SandboxLimits): Promise<void> {
    await this.cgroup?.applyLimits(limits);
  }

  async launch(argv: readonly string[], env: Readonly<Record<string, string>>): Promise<void> {
    validateLaunch(argv, env, (why, fields = {}) => new ThawError('Service', `sandbox ${this.id}: cannot launch: ${why}`, fields));
    if (this.launched) throw new ThawError('Service', `sandbox ${this.id} was launched already`);
    this.launched = true;
    feed(this.child, FD_ENV, workload(env, argv));
    const failure = await this.ready;
    if (failure !== undefined) throw new ThawError('Service', `sandbox ${this.id} failed to launch: ${failure}`);
  }

  maxMemoryBytes(): number {
    if (this.cgroup !== null) return this.cgroup.maxMemoryBytes();
    if (!this.done && this.main !== undefined) this.hwm = Math.max(this.hwm, vmHwmBytes(this.main) ?? 0);
    return this.hwm;
  }

  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      if (!this.done) {
        if (this.cgroup !== null) await this.cgroup.killAll();
        else {
          for (const pid of [this.init, this.pid]) {
            try {
              if (pid !== undefined) process.kill(pid, 'SIGKILL');
            } catch {
              // Gone.
            }
          }
        }
      }
      await this.exited;
      await this.cgroup?.remove();
      await this.disown();
      await this.tmp?.release();
      // No process of this uid is left (the cgroup is empty, or the pid namespace died with its init).
      this.identity.release();
      this.stdout.resume();
      this.stderr.resume();
    })();
    return this.destroyed;
  }
}
