/** Lambda's platform log lines, exactly as CloudWatch shows them for a function in the Text log format. */

export const startLine = (requestId: string, version: string): string =>
  `START RequestId: ${requestId} Version: ${version}`;

export const endLine = (requestId: string): string => `END RequestId: ${requestId}`;

export interface ReportFields {
  readonly requestId: string;
  readonly durationMs: number;
  readonly memorySizeMb: number;
  readonly maxMemoryUsedMb: number;
  readonly initDurationMs?: number;
  readonly restoreDurationMs?: number;
  readonly status?: 'timeout' | 'error';
  /** Thaw: how the environment of a cold start was made (plain, stem, code-cache, restore). */
  readonly startPath?: string;
}

export function reportLine(f: ReportFields): string {
  let s = `REPORT RequestId: ${f.requestId}\tDuration: ${f.durationMs.toFixed(2)} ms\tBilled Duration: ${Math.max(1, Math.ceil(f.durationMs))} ms\tMemory Size: ${f.memorySizeMb} MB\tMax Memory Used: ${f.maxMemoryUsedMb} MB`;
  if (f.initDurationMs !== undefined) s += `\tInit Duration: ${f.initDurationMs.toFixed(2)} ms`;
  if (f.restoreDurationMs !== undefined) s += `\tRestore Duration: ${f.restoreDurationMs.toFixed(2)} ms`;
  if (f.startPath !== undefined) s += `\tStart Path: ${f.startPath}`;
  if (f.status === 'timeout') s += '\tStatus: timeout';
  else if (f.status === 'error') s += '\tStatus: error';
  return `${s}\t`;
}

export const initStartLine = (runtimeId: string, binaryVersion: string): string =>
  `INIT_START Runtime Version: ${runtimeId.replace(/\.x$/, '')}.v${binaryVersion}\tRuntime Version ARN: arn:aws:lambda:us-east-1::runtime:thaw-${runtimeId}-${binaryVersion}`;
