/**
 * The seam between the Runtime API server (src/sandbox/runtime-api.ts) and an execution environment
 * (src/worker/environment.ts). The server speaks HTTP to the runtime inside the sandbox; the environment
 * decides what each call means for the lifecycle. Everything that arrives here came from a sandbox and is
 * untrusted: the server has already checked sizes and shapes.
 */

export interface InvocationRequest {
  readonly requestId: string;
  readonly payload: Buffer;
  /** Epoch milliseconds after which the invocation times out (Lambda-Runtime-Deadline-Ms). */
  readonly deadlineMs: number;
  readonly invokedFunctionArn: string;
  /** Lambda-Runtime-Trace-Id, e.g. Root=1-5f...;Parent=...;Sampled=0 */
  readonly traceId: string;
  /** Raw JSON text of the client context (already base64-decoded), when the caller sent one. */
  readonly clientContext?: string;
  /** Raw JSON text of the Cognito identity, when there is one. */
  readonly cognitoIdentity?: string;
}

/** What the server answers the runtime: 202 Accepted, or one of the emulator's error replies. */
export type RuntimeApiResult =
  | { readonly status: 202 }
  | { readonly status: 400 | 403 | 404 | 409 | 413 | 500; readonly errorType: string; readonly errorMessage: string };

export interface RuntimeErrorReport {
  /** Lambda-Runtime-Function-Error-Type header, if the runtime sent one. */
  readonly errorType?: string;
  /** The body as sent (normally JSON {errorMessage, errorType, stackTrace}); at most 6 MB. */
  readonly body: Buffer;
}

/** Implemented by an execution environment; called by the Runtime API server. */
export interface EnvironmentPort {
  /**
   * GET /runtime/invocation/next. Resolves with the next invocation for this environment; calling it also
   * tells the environment that Init (or the previous invocation) is finished. Rejects if `signal` aborts
   * (the runtime hung up) or the environment is shutting down.
   */
  next(signal: AbortSignal): Promise<InvocationRequest>;
  /** POST /runtime/invocation/{id}/response */
  response(requestId: string, payload: Buffer): RuntimeApiResult;
  /** POST /runtime/invocation/{id}/error */
  error(requestId: string, report: RuntimeErrorReport): RuntimeApiResult;
  /** POST /runtime/init/error */
  initError(report: RuntimeErrorReport): RuntimeApiResult;
  /** GET /runtime/restore/next: resolves when the environment has been restored and may run afterRestore hooks. */
  restoreNext(signal: AbortSignal): Promise<void>;
  /** POST /runtime/restore/error */
  restoreError(report: RuntimeErrorReport): RuntimeApiResult;

  // Thaw extensions, used only by Thaw's own runtimes (paths under /2018-06-01/runtime/thaw/).

  /**
   * GET /runtime/thaw/specialize: a stem cell (a runtime started before it knew its function) waits here.
   * Resolves with the environment variables of the function it becomes, once its code is in place.
   */
  specialize?(signal: AbortSignal): Promise<Readonly<Record<string, string>>>;
  /** GET /runtime/thaw/code-cache: the post-init code cache of this version, and whether to produce one. */
  codeCache?(): { readonly data?: Buffer; readonly produce: boolean };
  /**
   * POST /runtime/thaw/code-cache: how many bytes of code cache this environment may upload now; 0 (or absent)
   * refuses the upload before its body is read. Only the environment asked to produce one gets more than 0, once.
   */
  codeCacheLimit?(): number;
  /** POST /runtime/thaw/code-cache: the runtime uploads the code cache it produced after Init. */
  storeCodeCache?(data: Buffer): RuntimeApiResult;
}

/** Largest response or error body a runtime may post (Lambda: 6 MB + 100 bytes, 6291556, for synchronous responses). */
export const MAX_RUNTIME_RESPONSE_BYTES = 6 * 1024 * 1024 + 100;
