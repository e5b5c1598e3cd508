/**
 * Parsers for CLI flags: the trust boundary between what the user typed and typed values. Each throws
 * commander's InvalidArgumentError, which commander reports as `thaw: option '--x <v>' argument 'v' is invalid. ...`.
 */
import { InvalidArgumentError } from 'commander';

export function intOption(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return n;
  };
}

/** Repeatable `--env KEY=VALUE`: later values for the same key win. */
export function keyValue(v: string, previous: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError('use KEY=VALUE');
  return { ...previous, [v.slice(0, i)]: v.slice(i + 1) };
}

/** Repeatable `--weight VERSION=WEIGHT` for alias routing: weight in [0, 1]. */
export function versionWeight(v: string, previous: Readonly<Record<string, number>> | undefined): Record<string, number> {
  const m = /^([0-9]+)=([0-9]*\.?[0-9]+)$/.exec(v);
  const w = m === null ? NaN : Number(m[2]);
  if (m === null || !(w >= 0 && w <= 1)) throw new InvalidArgumentError('use VERSION=WEIGHT, e.g. 2=0.1 (a weight from 0 to 1)');
  return { ...previous, [m[1] as string]: w };
}

const UNITS_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: a duration back from now (`90s`, `10m`, `2h`, `1d`) or an ISO 8601 time; gives epoch ms. */
export function sinceOption(now: () => number = Date.now) {
  return (v: string): number => {
    const m = /^([0-9]+)([smhd])$/.exec(v.trim());
    if (m !== null) return now() - Number(m[1]) * (UNITS_MS[m[2] as string] as number);
    const t = /^\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) : NaN;
    if (Number.isNaN(t)) throw new InvalidArgumentError('use a duration such as 30s, 10m, 2h, 1d, or an ISO time such as 2025-01-31T12:00:00Z');
    return t;
  };
}

/** A function name from a folder or zip name: Lambda allows letters, digits, '-' and '_', up to 64. */
export function functionNameFrom(base: string): string {
  return base.replace(/\.zip$/i, '').replace(/[^a-zA-Z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
}

/** A duration in whole seconds: `300`, `90s`, `10m`, `2h`, `1d`; from min to max seconds. */
export function durationOption(min: number, max: number) {
  return (v: string): number => {
    const m = /^([0-9]+)([smhd]?)$/.exec(v.trim());
    const n = m === null ? NaN : (Number(m[1]) * (UNITS_MS[m[2] === '' ? 's' : (m[2] as string)] as number)) / 1000;
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`use seconds or a duration such as 90s, 10m, 2h (${min} s to ${max} s)`);
    return n;
  };
}
