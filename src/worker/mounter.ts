import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../util/log.js';

/**
 * Bind mounts on the hot path of a stem cell's specialisation. One long-lived perl process (perl-base is part
 * of every Debian system) makes the mount(2)/umount2(2) system calls on request: about 0.1 ms each, where
 * running mount(8) costs 2 to 5 ms per call.
 */
const SYSCALLS: Partial<Record<string, { mount: number; umount2: number }>> = {
  x64: { mount: 165, umount2: 166 },
  arm64: { mount: 40, umount2: 39 },
};
/** open_tree, move_mount and mount_setattr: the same numbers on every architecture (Linux 5.2 / 5.12). */
const NEW_MOUNT_API = { openTree: 428, moveMount: 429, mountSetattr: 442 };

/**
 * bind-ro makes the read-only bind in one step where the kernel can (a detached clone of the source, set
 * read-only, then attached): copies of the mount propagated into waiting sandboxes are read-only too. The
 * classic bind-then-remount is the fallback; its remount does not reach propagated copies.
 */
const SCRIPT = `
use strict; $| = 1;
my ($SYS_MOUNT, $SYS_UMOUNT2, $SYS_OPEN_TREE, $SYS_MOVE_MOUNT, $SYS_MOUNT_SETATTR) = @ARGV;
my ($MS_RDONLY, $MS_REMOUNT, $MS_BIND, $MNT_DETACH) = (1, 32, 4096, 2);
my ($AT_FDCWD, $OPEN_TREE_CLONE, $O_CLOEXEC, $AT_EMPTY_PATH, $MOUNT_ATTR_RDONLY, $MOVE_MOUNT_F_EMPTY_PATH) = (-100, 1, 0x80000, 0x1000, 1, 4);
my $none = "none";
my $empty = "";
my $new_api = 1;
sub bind_ro {
  my ($src, $dst) = @_;
  if ($new_api) {
    my $fd = syscall($SYS_OPEN_TREE, $AT_FDCWD, $src, $OPEN_TREE_CLONE | $O_CLOEXEC);
    if ($fd >= 0) {
      my $attr = pack('QQQQ', $MOUNT_ATTR_RDONLY, 0, 0, 0);
      my $r = syscall($SYS_MOUNT_SETATTR, $fd, $empty, $AT_EMPTY_PATH, $attr, length $attr);
      $r = syscall($SYS_MOVE_MOUNT, $fd, $empty, $AT_FDCWD, $dst, $MOVE_MOUNT_F_EMPTY_PATH) if $r == 0;
      my $err = $! + 0;
      POSIX::close($fd);
      $! = $err;
      return $r;
    }
    return -1 if $! + 0 != 38;
    $new_api = 0;
  }
  my $r = syscall($SYS_MOUNT, $src, $dst, 0, $MS_BIND, 0);
  $r = syscall($SYS_MOUNT, $none, $dst, 0, $MS_REMOUNT | $MS_BIND | $MS_RDONLY, 0) if $r == 0;
  return $r;
}
use POSIX ();
while (my $line = <STDIN>) {
  chomp $line;
  my ($id, $op, $src, $dst) = split /\\0/, $line, -1;
  my $r;
  if ($op eq 'bind-ro') {
    $r = bind_ro($src, $dst);
  } elsif ($op eq 'umount') {
    $r = syscall($SYS_UMOUNT2, $src, $MNT_DETACH);
  } else { $r = -1; $! = 22; }
  print $r == 0 ? "$id ok\\n" : "$id err " . ($! + 0) . "\\n";
}`;

export class Mounter {
  private proc: ChildProcess | undefined;
  private seq = 0;
  private closed = false;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  constructor(private readonly logger: Logger) {}

  private start(): ChildProcess {
    const calls = SYSCALLS[process.arch];
    if (calls === undefined) throw new Error(`no mount system call numbers for ${process.arch}`);
    const api = NEW_MOUNT_API;
    const p = spawn('perl', ['-e', SCRIPT, String(calls.mount), String(calls.umount2), String(api.openTree), String(api.moveMount), String(api.mountSetattr)], { stdio: ['pipe', 'pipe', 'inherit'], env: { PATH: '/usr/bin:/bin' } });
    createInterface({ input: p.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const [id, status, errno] = line.split(' ');
      const w = this.pending.get(Number(id));
      if (w === undefined) return;
      this.pending.delete(Number(id));
      if (status === 'ok') w.resolve();
      else w.reject(new Error(`mount operation failed: errno ${errno ?? '?'}`));
    });
    p.once('exit', (code) => {
      if (!this.closed) this.logger.warn({ code }, 'mount helper exited; it restarts on the next request');
      this.proc = undefined;
      for (const w of this.pending.values()) w.reject(new Error('mount helper exited'));
      this.pending.clear();
    });
    // The helper never keeps Thaw alive: its process and pipes are unreferenced.
    p.unref();
    for (const stream of [p.stdin, p.stdout]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
    return p;
  }

  private op(op: string, a: string, b = ''): Promise<void> {
    if (this.closed) return Promise.reject(new Error('mount helper closed'));
    if ([a, b].some((s) => s.includes('\0') || s.includes('\n'))) return Promise.reject(new Error('bad path'));
    this.proc ??= this.start();
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.proc?.stdin?.write(`${id}\0${op}\0${a}\0${b}\n`);
    });
  }

  /** Start the helper ahead of the first request. */
  warm(): void {
    this.proc ??= this.start();
  }

  /** A read-only bind mount of `source` on `target`. */
  bindReadOnly(source: string, target: string): Promise<void> {
    return this.op('bind-ro', source, target);
  }

  /** Lazy unmount of `target`. */
  unmount(target: string): Promise<void> {
    return this.op('umount', target);
  }

  close(): void {
    this.closed = true;
    this.proc?.stdin?.end();
    this.proc = undefined;
  }
}
