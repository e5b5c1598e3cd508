/**
 * How the CLI fails: one line on stderr, `thaw: <message>`, and exit code 1. API errors keep AWS's error name
 * (`ResourceNotFoundException: Function not found: ...`) so they read the same as in any Lambda client.
 */

/** A mistake the user can fix (bad flag, missing file, no credentials): the message is the whole story. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/** An error answer from one of Thaw's own endpoints, in Lambda's shape (x-amzn-ErrorType + Message). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(readonly type: string, message: string, readonly status: number) {
    super(message);
  }
}

/** Node's codes for "there is nobody at that address". */
export const UNREACHABLE: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
/** ... and for "there was, but the connection broke". */
const BROKEN = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'UND_ERR_SOCKET']);

/** The network error code anywhere in an error's cause chain (fetch and AggregateError nest them), if any. */
export function networkCode(e: unknown, depth = 0): string | undefined {
  if (depth > 5 || typeof e !== 'object' || e === null) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (UNREACHABLE.has(code) || BROKEN.has(code))) return code;
  const nested = [(e as { cause?: unknown }).cause, ...((e as { errors?: unknown }).errors instanceof Array ? (e as { errors: unknown[] }).errors : [])];
  for (const n of nested) {
    const c = networkCode(n, depth + 1);
    if (c !== undefined) return c;
  }
  return undefined;
}

/** An AWS SDK service exception: it carries $metadata and $fault. */
function isServiceException(e: unknown): e is Error & { $fault: string; $metadata: { httpStatusCode?: number } } {
  return e instanceof Error && '$metadata' in e && '$fault' in e;
}

/** The one line to show for an error: never a stack trace, never more than one line. */
export function describeError(e: unknown): string {
  let msg: string;
  if (e instanceof ApiError) msg = `${e.type}: ${e.message}`;
  else if (isServiceException(e)) msg = e.message === '' || e.message === e.name ? e.name : `${e.name}: ${e.message}`;
  else if (e instanceof Error) msg = e.message === '' ? e.name : e.message;
  else msg = String(e);
  const line = msg.split('\n').map((l) => l.trim()).filter((l) => l !== '').join(' ');
  return line.length > 1000 ? `${line.slice(0, 997)}...` : line;
}
