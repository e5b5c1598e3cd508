import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ThawError } from '../util/errors.js';
import { alive } from '../util/alive.js';

/**
 * Host uids and gids for sandboxes: every environment runs as its own uid (gid = uid) taken from a reserved range
 * when its sandbox starts and given back when it is destroyed, so environments share no kernel keyring, no
 * per-user process count (RLIMIT_NPROC) and cannot signal each other.
 *
 * The range skips 0, 65534 and every id named in the host's /etc/passwd or /etc/group. Ids are handed out round
 * robin, so a released id is reused as late as possible. Several Thaw processes on one host share the range:
 * each id in use is leased by a file `<leaseDir>/<uid>` created with O_EXCL and holding the owner's pid; a lease
 * whose owner is gone is taken over. Without a writable lease directory the leases are only this process's.
 */

/** 0x70000000: above systemd-nspawn's container range (0x80000–0x6fffffff), below 2^31 for tools with signed uids. */
export const DEFAULT_UID_BASE = 0x70000000;
export const DEFAULT_UID_COUNT = 65536;
export const DEFAULT_LEASE_DIR = '/run/thaw/sandbox-ids';

export interface SandboxIdentity {
  readonly uid: number;
  readonly gid: number;
  /** Give the id back. Only once no process of this uid runs. Idempotent. */
  release(): void;
}

export interface IdentityPoolOptions {
  readonly base?: number;
  readonly count?: number;
  /** Directory of cross-process leases; null for leases in this process only. */
  readonly leaseDir?: string | null;
}

/** Ids named in a passwd- or group-format file (third field). */
function namedIds(file: string): Set<number> {
  const out = new Set<number>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const id = Number(line.split(':')[2]);
    if (line !== '' && Number.isInteger(id)) out.add(id);
  }
  return out;
}

/** Whether any process runs as this uid (/proc/PID is owned by the process's effective uid). */
function uidRuns(uid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    try {
      if (statSync(`/proc/${entry}`).uid === uid) return true;
    } catch {
      // Gone meanwhile.
    }
  }
  return false;
}


export class IdentityPool {
  readonly base: number;
  readonly count: number;
  private readonly reserved: ReadonlySet<number>;
  private readonly held = new Set<number>();
  private readonly leaseDir: string | null;
  private cursor = 0;

  constructor(opts: IdentityPoolOptions = {}) {
    this.base = opts.base ?? DEFAULT_UID_BASE;
    this.count = opts.count ?? DEFAULT_UID_COUNT;
    if (!Number.isInteger(this.base) || !Number.isInteger(this.count) || this.base < 1 || this.count < 1 || this.base + this.count > 0xfffffffe) {
      throw new ThawError('Service', `invalid sandbox uid range ${this.base}+${this.count}`);
    }
    this.reserved = new Set([0, 65534, ...namedIds('/etc/passwd'), ...namedIds('/etc/group')]);
    let dir = opts.leaseDir === undefined ? DEFAULT_LEASE_DIR : opts.leaseDir;
    if (dir !== null) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch {
        dir = null;
      }
    }
    this.leaseDir = dir;
  }

  /** A free id, leased until release(). Throws when the whole range is in use. */
  acquire(): SandboxIdentity {
    for (let tried = 0; tried < this.count; tried++) {
      const uid = this.base + this.cursor;
      this.cursor = (this.cursor + 1) % this.count;
      if (this.reserved.has(uid) || this.held.has(uid) || !this.lease(uid)) continue;
      this.held.add(uid);
      let released = false;
      return {
        uid,
        gid: uid,
        release: () => {
          if (released) return;
          released = true;
          this.held.delete(uid);
          if (this.leaseDir !== null) {
            try {
              unlinkSync(join(this.leaseDir, String(uid)));
            } catch {
              // Already gone.
            }
          }
        },
      };
    }
    throw new ThawError('Service', `every sandbox uid in ${this.base}..${this.base + this.count - 1} is in use`);
  }

  /** Ids this process holds now. */
  inUse(): number {
    return this.held.size;
  }

  private lease(uid: number): boolean {
    if (this.leaseDir === null) return true;
    const file = join(this.leaseDir, String(uid));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return false;
      }
      let owner = NaN;
      try {
        owner = Number(readFileSync(file, 'utf8'));
      } catch {
        continue; // released meanwhile
      }
      // An empty file is a lease being written right now; a live owner keeps its lease.
      if (!Number.isInteger(owner) || owner <= 0 || owner === process.pid || alive(owner)) return false;
      // The owner died, but processes of this uid may outlive it (an environment left frozen by a killed server):
      // the id is free only once none is left, or they would share its process limit and signals.
      if (uidRuns(uid)) return false;
      try {
        unlinkSync(file);
      } catch {
        return false;
      }
    }
    return false;
  }
}
