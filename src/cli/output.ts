/** Human and machine output: aligned tables, byte sizes, one JSON document. */
import { terminalSafeJson } from './escape.js';

/** Print one JSON document on stdout, leaving out the SDK's $metadata; control characters only as \u escapes. */
export function printJson(value: unknown): void {
  process.stdout.write(`${terminalSafeJson(JSON.stringify(value, (k, v: unknown) => (k === '$metadata' ? undefined : v), 2))}\n`);
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n') + '\n';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u] as string}`;
}

/** Lambda's LastModified (2025-01-31T12:00:00.000+0000) as a short UTC time. */
export function shortTime(lambdaTime: string | undefined): string {
  if (lambdaTime === undefined) return '-';
  const t = Date.parse(lambdaTime);
  return Number.isNaN(t) ? lambdaTime : new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
