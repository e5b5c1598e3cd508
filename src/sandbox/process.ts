import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { ThawError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { detectCgroups, type Cgroup, type CgroupManager } from './cgroups.js';
import type { SandboxLimits, ExitInfo, Mount, Sandbox, SandboxDriver, SandboxSpec } from './driver.js';

/**
 * The plain process driver: child_process.spawn with exactly spec.env, no isolation at all. For development
 * and hosts where the namespaces driver cannot run. Limits, peak memory and OOM detection come from cgroups
 * when they are writable; without them peak memory is the main process's VmHWM and nothing is limited.
 *
 * Mounts are not mounted: paths under a mount's sandbox prefix are rewritten to its host directory
 * (argv entries, cwd, and each ':'-separated element of env values). Mounts are therefore writable here.
 * When the main process exits, whatever it left running is killed (as on the namespaces driver).
 */

export interface ProcessDriverOptions {
  readonly logger?: Logger;
  /** A cgroup manager, null to run without cgroups, or undefined to detect them on first start. */
  readonly cgroups?: CgroupManager | null;
}

const SPEC_ID = /^[a-z0-9][a-z0-9-]*$/;

/** The host path a sandbox path stands for: longest mount prefix wins, other paths are unchanged. */
/**
 * Spawn a sandbox's outermost process; when it cannot start, remove its cgroup and throw a ServiceException
 * naming the sandbox (shared by the drivers).
 */
export async function spawnSandboxProcess(
  id: string,
  cgroup: Cgroup | null,
  file: string,
  args: readonly string[],
  options: SpawnOptions,
  fields: Record<string, unknown> = {},
): Promise<ChildProcess> {
  let child: ChildProcess;
  try {
    child = spawn(file, args, options);
  } catch (err) {
    await cgroup?.remove();
    throw new ThawError('Service', `sandbox ${id} failed to start`, fields, { cause: err });
  }
  if (child.pid === undefined) {
    const [err] = (await once(child, 'error')) as [Error];
    await cgroup?.remove();
    throw new ThawError('Service', `sandbox ${id} failed to start: ${err.message}`, fields, { cause: err });
  }
  return child;
}

export function resolveMountPath(sandboxPath: string, mounts: readonly Mount[]): string {
  let best: { host: string; prefix: string } | undefined;
  for (const m of mounts) {
    const prefix = m.sandbox.length > 1 ? m.sandbox.replace(/\/+$/, '') : m.sandbox;
    const under = sandboxPath === prefix || sandboxPath.startsWith(prefix === '/' ? '/' : prefix + '/');
    if (under && (best === undefined || prefix.length > best.prefix.length)) best = { host: m.host, prefix };
  }
  if (best === undefined) return sandboxPath;
  const rest = best.prefix === '/' ? sandboxPath.slice(1) : sandboxPath.slice(best.prefix.length).replace(/^\//, '');
  return rest === '' ? best.host : `${best.host.replace(/\/+$/, '')}/${rest}`;
}

/** Peak resident set of one process (VmHWM), or undefined once it is gone. */
export function vmHwmBytes(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/**
 * Checks every driver makes before starting anything. Strings travel NUL-separated to bwrap and to the
 * sandbox init, so a NUL anywhere could smuggle in extra arguments: refused, like any other malformed spec.
 */
export function validateSpec(spec: SandboxSpec): void {
  const bad = (why: string, fields: Record<string, unknown> = {}): ThawError =>
    new ThawError('Service', `invalid sandbox spec ${JSON.stringify(spec.id)}: ${why}`, fields);
  const nul = (s: string): boolean => s.includes('\0');
  if (!SPEC_ID.test(spec.id)) throw bad('id must match [a-z0-9][a-z0-9-]*');
  if (spec.deferred === true) {
    if (spec.argv.length > 0 || Object.keys(spec.env).length > 0) throw bad('a deferred sandbox gets argv and env at launch');
  } else {
    validateLaunch(spec.argv, spec.env, bad);
  }
  if (!spec.cwd.startsWith('/') || nul(spec.cwd)) throw bad('cwd must be an absolute path', { cwd: spec.cwd });
  for (const m of spec.mounts) {
    if (!m.sandbox.startsWith('/') || !m.host.startsWith('/') || nul(m.host) || nul(m.sandbox)) {
      throw bad('mount paths must be absolute', { mount: m });
    }
  }
  if (spec.runtimeApiSocket !== undefined && (!spec.runtimeApiSocket.startsWith('/') || nul(spec.runtimeApiSocket))) {
    throw bad('runtimeApiSocket must be an absolute path');
  }
  const { memoryBytes, pids, cpuShares, tmpBytes } = spec.limits;
  if (![memoryBytes, pids, cpuShares, tmpBytes].every((n) => Number.isFinite(n) && n > 0)) {
    throw bad('limits must be positive numbers', { limits: spec.limits });
  }
}

/** argv and env of a workload: a non-empty argv, no NUL anywhere, well-formed variable names. */
export function validateLaunch(
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
  bad: (why: string, fields?: Record<string, unknown>) => ThawError,
): void {
  const nul = (s: string): boolean => s.includes('\0');
  if (argv.length === 0 || argv[0] === '') throw bad('empty argv');
  if (argv.some(nul)) throw bad('NUL in argv');
  for (const [k, v] of Object.entries(env)) {
    if (k === '' || k.includes('=') || nul(k) || nul(v)) throw bad('malformed environment variable', { name: k });
  }
}

export class ProcessDriver implements SandboxDriver {
  readonly name = 'process' as const;
  readonly isolates = false;
  readonly runtimeApiTransport = 'tcp' as const;
  readonly canDefer = false;
  private readonly log: Logger;
  private cgroups: Promise<CgroupManager | null> | undefined;

  constructor(opts: ProcessDriverOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    if (opts.cgroups !== undefined) this.cgroups = Promise.resolve(opts.cgroups);
    this.log.warn(
      { driver: this.name },
      'process sandbox driver ISOLATES NOTHING: function code runs as this user with full access to the host, its files and its network',
    );
  }

  resolve(sandboxPath: string, mounts: readonly Mount[]): string {
    return resolveMountPath(sandboxPath, mounts);
  }

  async start(spec: SandboxSpec): Promise<Sandbox> {
    validateSpec(spec);
    if (spec.deferred === true) throw new ThawError('Service', `sandbox ${spec.id}: the process driver cannot start deferred sandboxes`);
    const m = spec.mounts;
    const argv = spec.argv.map((a) => resolveMountPath(a, m));
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(spec.env)) {
      env[k] = v.split(':').map((part) => resolveMountPath(part, m)).join(':');
    }
    const cwd = resolveMountPath(spec.cwd, m);

    this.cgroups ??= detectCgroups({ logger: this.log });
    const manager = await this.cgroups;
    const cgroup = manager === null ? null : await manager.create(spec.id, spec.limits);
    // The shell joins the cgroup and then becomes the workload (exec), so nothing runs outside it.
    // dash exports PWD on its own; drop it unless the spec asked for it.
    const script = [cgroup?.joinScript(), 'PWD' in env ? undefined : 'unset PWD', 'exec "$@"']
      .filter((s) => s !== undefined)
      .join(' && ');
    const child = await spawnSandboxProcess(spec.id, cgroup, '/bin/sh', ['-c', script, 'thaw-sandbox', ...argv], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    }, { cwd });
    return new ProcessSandbox(spec.id, child, child.pid as number, cgroup, this.log);
  }
}

class ProcessSandbox implements Sandbox {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly exited: Promise<ExitInfo>;
  private done = false;
  private hwm = 0;
  private readonly sampler: NodeJS.Timeout | undefined;
  private destroyed: Promise<void> | undefined;

  constructor(
    readonly id: string,
    child: ChildProcess,
    readonly pid: number,
    private readonly cgroup: Cgroup | null,
    private readonly log: Logger,
  ) {
    if (child.stdout === null || child.stderr === null) throw new Error('spawned without stdout/stderr pipes');
    // Node discards child output nobody listens to once the child exits; these keep it for the caller.
    this.stdout = child.stdout.pipe(new PassThrough());
    this.stderr = child.stderr.pipe(new PassThrough());
    child.on('error', (err) => log.warn({ sandbox: id, err }, 'sandbox process error'));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve(this.finish(code, signal)));
    });
    if (cgroup === null) {
      // Without a memory cgroup, peak memory is the main process's VmHWM, which is gone after exit: sample it.
      this.sampler = setInterval(() => this.maxMemoryBytes(), 100);
      this.sampler.unref();
    }
  }

  private async finish(code: number | null, signal: NodeJS.Signals | null): Promise<ExitInfo> {
    this.done = true;
    if (this.sampler !== undefined) clearInterval(this.sampler);
    try {
      await this.killRest();
    } catch (err) {
      this.log.warn({ sandbox: this.id, err }, 'could not kill what the sandbox left running');
    }
    const oomKilled = this.cgroup?.oomKilled() ?? false;
    this.cgroup?.maxMemoryBytes();
    return { code, signal, oomKilled };
  }

  /** Kill every process of the environment: the whole cgroup, or else the process group. */
  private async killRest(): Promise<void> {
    if (this.cgroup !== null) return this.cgroup.killAll();
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // No process left in the group.
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.done) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // Exited meanwhile.
    }
  }

  async updateLimits(limits: SandboxLimits): Promise<void> {
    await this.cgroup?.applyLimits(limits);
  }

  maxMemoryBytes(): number {
    if (this.cgroup !== null) return this.cgroup.maxMemoryBytes();
    if (!this.done) this.hwm = Math.max(this.hwm, vmHwmBytes(this.pid) ?? 0);
    return this.hwm;
  }

  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      if (!this.done) await this.killRest();
      await this.exited;
      await this.cgroup?.remove();
      // Output nobody read is dropped, so the pipes close.
      this.stdout.resume();
      this.stderr.resume();
    })();
    return this.destroyed;
  }
}
