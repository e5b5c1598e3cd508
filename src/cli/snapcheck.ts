/**
 * `thaw snapcheck PATH`: flag code that runs during Init and does not survive a SnapStart snapshot (random
 * values and timestamps captured at Init, connections, timers and other handles left open). Static: nothing
 * is run. Exit code 1 when there is an error-severity finding, 0 otherwise, 2 when the check could not run
 * (no PATH, PATH not found, bad flag, no parser).
 */
import type { Command } from 'commander';
import { describeError } from './errors.js';
import { printJson } from './output.js';
import { SnapcheckError, snapcheck, type SnapFinding } from '../snapshot/snapcheck.js';

interface SnapcheckFlags {
  json?: boolean;
  includeDeps?: boolean;
}

const EXIT_USAGE = 2;

export function registerSnapcheck(program: Command): void {
  program
    .command('snapcheck')
    .description("find Init code that is not snapshot-safe (random values, time, connections, open handles) in a function's files")
    .argument('[path]', "the function's folder, or one .js/.mjs/.cjs file")
    .option('--json', 'print { findings: [...] } as JSON')
    .option('--include-deps', 'scan node_modules too')
    // Usage errors (unknown flag) exit 2, so that 1 keeps meaning "hazards found".
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE))
    .action(async (target: string | undefined, flags: SnapcheckFlags) => {
      if (target === undefined || target === '') return usage('snapcheck needs a PATH: a function folder or a .js/.mjs/.cjs file');
      let findings: readonly SnapFinding[];
      let files: readonly string[];
      try {
        ({ findings, files } = await snapcheck(target, { includeDeps: flags.includeDeps === true }));
      } catch (e) {
        if (e instanceof SnapcheckError) return usage(describeError(e));
        throw e;
      }
      if (flags.json === true) printJson({ findings });
      else process.stdout.write(human(findings, files.length));
      process.exitCode = findings.some((f) => f.severity === 'error') ? 1 : 0;
    });
}

function usage(message: string): void {
  process.stderr.write(`thaw: ${message}\n`);
  process.exitCode = EXIT_USAGE;
}

function human(findings: readonly SnapFinding[], fileCount: number): string {
  const files = `${fileCount} file${fileCount === 1 ? '' : 's'}`;
  if (findings.length === 0) return `No snapshot hazards found in ${files}.\n`;
  const lines = findings.map((f) => `${f.file}:${f.line}:${f.column}  ${f.severity.padEnd(7)}  ${f.rule}  ${f.message}\n    fix: ${f.fix}\n`);
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  return `${lines.join('')}\n${count(errors, 'error')}, ${count(warnings, 'warning')} in ${files}.\n`;
}
