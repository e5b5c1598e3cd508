import type { Readable } from 'node:stream';

/**
 * The SandboxDriver seam: everything that starts an isolated process for an execution environment.
 * Every driver passes test/sandbox/conformance.ts.
 */

/** A host directory made visible, read-only, inside the sandbox. */
export interface Mount {
  readonly host: string;
  /** Absolute path inside the sandbox, e.g. /var/task, /var/runtime, /opt. */
  readonly sandbox: string;
  /**
   * Writable instead of read-only (only for platform jobs such as snapshot builds, never for functions). An
   * isolating driver gives the directory itself (not what is in it) to the sandbox's uid while the sandbox
   * runs and back to root when it is destroyed.
   */
  readonly writable?: boolean;
}

export interface SandboxLimits {
  readonly memoryBytes: number;
  /** Cap on processes/threads inside the environment. */
  readonly pids: number;
  /** Relative CPU weight (cgroup v1 cpu.shares semantics: 1024 = one full share). */
  readonly cpuShares: number;
  /** Size of the private writable /tmp. */
  readonly tmpBytes: number;
}

export interface SandboxSpec {
  /** Environment id; unique per environment, safe for file names ([a-z0-9-]). */
  readonly id: string;
  readonly mounts: readonly Mount[];
  /** argv[0] and its arguments, with paths as seen inside the sandbox (see SandboxDriver.resolve). */
  readonly argv: readonly string[];
  /** The complete environment of the process: nothing is inherited from the host. */
  readonly env: Readonly<Record<string, string>>;
  /** Working directory inside the sandbox. */
  readonly cwd: string;
  readonly limits: SandboxLimits;
  /**
   * Host path of the Unix socket serving this environment's Runtime API. Drivers with
   * runtimeApiTransport 'unix' make it visible at RUNTIME_API_SOCKET inside the sandbox (and make it
   * connectable by the sandbox's unprivileged user: the namespaces driver chmods it 0666).
   */
  readonly runtimeApiSocket?: string;
  /**
   * Also serve the Runtime API on TCP 127.0.0.1:9001 inside the sandbox (forwarded to runtimeApiSocket),
   * for runtimes that only speak TCP to AWS_LAMBDA_RUNTIME_API. argv starts once the port is listening.
   * Only meaningful with runtimeApiTransport 'unix'; set AWS_LAMBDA_RUNTIME_API to 127.0.0.1:9001.
   */
  readonly runtimeApiTcp?: boolean;
  /**
   * Start the sandbox (namespaces, mounts, cgroup) but hold the workload back: argv and env must be empty here,
   * and Sandbox.launch supplies them later. Only for drivers with `canDefer`. The working directory is entered
   * again at launch, so a mount made onto it in the meantime (shared propagation) is seen.
   */
  readonly deferred?: boolean;
}

/** Where the Runtime API socket appears inside an isolating sandbox. */
export const RUNTIME_API_SOCKET = '/var/run/thaw/runtime-api.sock';

export interface ExitInfo {
  /** Exit code, or null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when the kernel's OOM killer (or the memory cgroup) ended the environment. */
  readonly oomKilled: boolean;
}

export interface Sandbox {
  readonly id: string;
  /** Host pid of the sandbox's outermost process. */
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once, when every process of the environment has exited. */
  readonly exited: Promise<ExitInfo>;
  /** Signal the environment's main process (SIGTERM for a graceful shutdown). */
  kill(signal?: NodeJS.Signals): void;
  /** Peak memory use of the whole environment so far, in bytes. */
  maxMemoryBytes(): number;
  /**
   * Change the memory, pids and CPU limits of a running environment (a stem cell becoming a function). The
   * /tmp size cannot change. Absent when the driver cannot do it.
   */
  updateLimits?(limits: SandboxLimits): Promise<void>;
  /**
   * Run the workload of a sandbox started with `deferred`: argv (sandbox paths) with exactly env. Resolves once
   * it runs; rejects when it cannot. Once only.
   */
  launch?(argv: readonly string[], env: Readonly<Record<string, string>>): Promise<void>;
  /** Host uid the workload runs as, when the driver gives each environment its own. */
  readonly uid?: number;
  /**
   * Stop every process of the environment while it waits for its next event (Lambda freezes idle
   * environments). One write; the kernel completes the freeze on its own. Returns false when the driver cannot.
   * kill() and destroy() thaw first.
   */
  freeze?(): boolean;
  /** Resume a frozen environment: one write. A no-op when it is not frozen. */
  thaw?(): void;
  /** CPU time the whole environment has used, in nanoseconds, when the driver can tell. */
  cpuUsageNs?(): number | undefined;
  /** Kill everything still running and release host resources (cgroups, temporary directories, its uid). Idempotent. */
  destroy(): Promise<void>;
}

export interface SandboxDriver {
  readonly name: 'namespaces' | 'process';
  /** False for drivers that isolate nothing. */
  readonly isolates: boolean;
  /** How environments reach their Runtime API: a loopback TCP port on the host, or a Unix socket. */
  readonly runtimeApiTransport: 'tcp' | 'unix';
  /**
   * Map a path as seen inside the sandbox to the path the process will really see. Isolating drivers
   * return it unchanged; the plain process driver maps mount points back to their host directories
   * (longest mount prefix wins; other paths unchanged). start() applies this mapping itself to argv
   * entries, cwd, and each ':'-separated element of env values, so specs are written with sandbox paths;
   * call resolve() only for paths handed over some other way.
   */
  resolve(sandboxPath: string, mounts: readonly Mount[]): string;
  /** Whether start() takes `deferred` specs. */
  readonly canDefer: boolean;
  start(spec: SandboxSpec): Promise<Sandbox>;
}
