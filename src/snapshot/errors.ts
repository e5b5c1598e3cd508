/**
 * Why a SnapStart optimisation failed, as a catalogue: a stable `code` to match on, whether the function's
 * owner or the platform is at fault, and a `userMessage` written for the owner (it becomes the version's
 * StateReason). Nothing here carries host paths or stack traces of Thaw itself.
 */
export const SNAPSHOT_BUILD_ERRORS = {
  /** The handler could not be bundled into one file (syntax error, missing module, top-level await, ...). */
  BundleFailed: { kind: 'user', stateReasonCode: 'FunctionError' },
  /** Init threw, or the handler is missing or not a function. */
  InitFailed: { kind: 'user', stateReasonCode: 'FunctionError' },
  /** A beforeCheckpoint hook threw or rejected. */
  HookFailed: { kind: 'user', stateReasonCode: 'FunctionError' },
  /** Sockets, servers, timers, child processes or watchers were still open at the checkpoint. */
  OpenHandles: { kind: 'user', stateReasonCode: 'FunctionError' },
  /** Init used something a V8 startup snapshot cannot hold (network modules, native addons, workers, ...). */
  Unsupported: { kind: 'user', stateReasonCode: 'FunctionError' },
  /** Init and the beforeCheckpoint hooks did not finish in time. */
  Timeout: { kind: 'user', stateReasonCode: 'FunctionError' },
  /**
   * What the build left in its output directory is not what the runtime writes there: a symbolic or hard link,
   * a FIFO, device or directory, or a file over its size limit. Only the function's Init can do that.
   */
  OutputRejected: { kind: 'user', stateReasonCode: 'FunctionError' },
  /** The runtime died or produced no usable snapshot for a reason outside the function's code. */
  BuildCrashed: { kind: 'system', stateReasonCode: 'InternalError' },
} as const satisfies Record<string, { kind: 'user' | 'system'; stateReasonCode: 'FunctionError' | 'InternalError' }>;

export type SnapshotBuildErrorCode = keyof typeof SNAPSHOT_BUILD_ERRORS;

export class SnapshotBuildError extends Error {
  readonly code: SnapshotBuildErrorCode;
  /** The StateReason a user sees: what went wrong, in the function's terms, and what to do about it. */
  readonly userMessage: string;
  /** Lambda error type when Init failed like a normal Init would (Runtime.ImportModuleError, TypeError, ...). */
  readonly errorType?: string;
  /** One line per finding (each open handle, each unsupported use), for logs and `thaw snapcheck`. */
  readonly details: readonly string[];

  constructor(code: SnapshotBuildErrorCode, userMessage: string, opts: { errorType?: string; details?: readonly string[]; cause?: unknown } = {}) {
    super(userMessage, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SnapshotBuildError';
    this.code = code;
    this.userMessage = userMessage;
    if (opts.errorType !== undefined) this.errorType = opts.errorType;
    this.details = Object.freeze([...(opts.details ?? [])]);
  }

  get kind(): 'user' | 'system' {
    return SNAPSHOT_BUILD_ERRORS[this.code].kind;
  }

  /** Lambda's StateReasonCode for a version that failed this way. */
  get stateReasonCode(): 'FunctionError' | 'InternalError' {
    return SNAPSHOT_BUILD_ERRORS[this.code].stateReasonCode;
  }

  /** A plain object that survives a process boundary (structured clone, JSON). */
  toJSON(): { name: string; code: SnapshotBuildErrorCode; userMessage: string; errorType?: string; details: readonly string[] } {
    return {
      name: this.name,
      code: this.code,
      userMessage: this.userMessage,
      ...(this.errorType === undefined ? {} : { errorType: this.errorType }),
      details: this.details,
    };
  }
}

export function isSnapshotBuildError(e: unknown): e is SnapshotBuildError {
  return e instanceof SnapshotBuildError;
}

/** Why a stored snapshot must not be handed to V8. All are system errors: the snapshot is rebuilt. */
export const SNAPSHOT_VERIFY_ERRORS = {
  ManifestMissing: 'no manifest.json: the snapshot was never committed',
  ManifestInvalid: 'manifest.json is not a valid snapshot manifest',
  BlobMissing: 'the snapshot blob named by the manifest is missing',
  SizeMismatch: 'the blob size differs from the manifest',
  ChecksumMismatch: 'the blob SHA-256 differs from the manifest',
  BinaryChanged: 'the runtime binary differs from the one the snapshot was built with',
  FlagsChanged: 'the runtime flags differ from the ones the snapshot was built with',
} as const;

export type SnapshotVerifyErrorCode = keyof typeof SNAPSHOT_VERIFY_ERRORS;

export class SnapshotVerifyError extends Error {
  readonly code: SnapshotVerifyErrorCode;
  constructor(code: SnapshotVerifyErrorCode, detail?: string) {
    super(detail === undefined ? SNAPSHOT_VERIFY_ERRORS[code] : `${SNAPSHOT_VERIFY_ERRORS[code]}: ${detail}`);
    this.name = 'SnapshotVerifyError';
    this.code = code;
  }
}
