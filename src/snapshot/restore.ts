/**
 * How an environment starts from a SnapStart snapshot (the counterpart of builder.ts):
 *
 *   argv:   NODE ...manifest.flags --snapshot-blob BLOB -- [--runtime-api-socket SOCKET]
 *   env:    the function's environment and Lambda variables as for a plain start (AWS_LAMBDA_RUNTIME_API
 *           when there is no socket), with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start and NODE_OPTIONS equal
 *           to manifest.nodeOptions
 *   mounts: the code at manifest.taskRoot (the snapshot holds paths into it), the Node binary the manifest
 *           names (checked by verifySnapshot), and the blob; /var/runtime is not needed (the runtime is in the
 *           blob)
 *   cwd:    manifest.taskRoot
 *
 * The restored process calls GET /runtime/restore/next first and waits for it, runs the function's
 * afterRestore hooks, then asks /runtime/invocation/next. A hook failure arrives as POST /runtime/restore/error
 * and the process exits.
 *
 * Everything after `--` is the runtime's own argv: Node would take `--runtime-api-socket` for one of its options.
 */
export interface RestoreCommand {
  /** Node binary as the environment sees it. */
  readonly nodeBinary: string;
  /** Blob as the environment sees it. */
  readonly blobPath: string;
  /** manifest.flags */
  readonly flags: readonly string[];
  /** Runtime API Unix socket inside the environment; omit to use AWS_LAMBDA_RUNTIME_API (TCP). */
  readonly runtimeApiSocket?: string;
}

export function restoreArgv(c: RestoreCommand): string[] {
  return [c.nodeBinary, ...c.flags, '--snapshot-blob', c.blobPath, '--', ...(c.runtimeApiSocket === undefined ? [] : ['--runtime-api-socket', c.runtimeApiSocket])];
}

/** Variables a restored environment gets on top of a plain start's. */
export const RESTORE_ENV: Readonly<Record<string, string>> = Object.freeze({ AWS_LAMBDA_INITIALIZATION_TYPE: 'snap-start' });
