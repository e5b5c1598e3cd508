import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { Mount } from '../sandbox/driver.js';
import type { BundleResult } from './bundle.js';
import { SnapshotBuildError } from './errors.js';
import { readOutput } from './outputs.js';

/**
 * Host side of the bundling step: the bundler (bundle-sandbox.ts, esbuild's JS API and binary) runs as its own
 * process through the build's spawn, so on the platform it runs in the build sandbox and can read only the
 * function's code and layers; the host reads back its result file like any other build output (outputs.ts)
 * and checks it against a schema.
 */

/** Where the bundler's files appear inside the build sandbox. */
export const BUNDLER_VIEW = '/var/bundler';
const RESULT_FILE = 'bundle-result.json';
const MAX_RESULT_BYTES = 4 * 1024 * 1024;

/** The directory of the compiled bundler (this module's own directory). */
const LIB_DIR = dirname(fileURLToPath(import.meta.url));

function esbuildDirs(): { pkg: string; binaryPkg: string; binaryName: string } {
  const req = createRequire(import.meta.url);
  const main = req.resolve('esbuild');
  const pkg = dirname(dirname(main));
  const binaryName = `@esbuild/${process.platform}-${process.arch}`;
  const binaryPkg = dirname(createRequire(main).resolve(`${binaryName}/package.json`));
  return { pkg, binaryPkg, binaryName };
}

/**
 * The read-only mounts a build sandbox needs to run the bundler: the compiled snapshot modules, the package
 * manifest (it makes them ES modules), esbuild and its platform binary. Nothing else of the installation.
 */
export function bundlerMounts(view = BUNDLER_VIEW): Mount[] {
  const e = esbuildDirs();
  return [
    { host: LIB_DIR, sandbox: join(view, 'lib') },
    { host: join(LIB_DIR, '..', '..', '..', 'package.json'), sandbox: join(view, 'package.json') },
    { host: e.pkg, sandbox: join(view, 'node_modules', 'esbuild') },
    { host: e.binaryPkg, sandbox: join(view, 'node_modules', e.binaryName) },
  ];
}

const str = z.string().max(4096);
const resultSchema = z.discriminatedUnion('ok', [
  z.strictObject({
    ok: z.literal(true),
    sizeBytes: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    taskFile: str,
    exportPath: z.array(str).min(1).max(64),
    inputs: z.number().int().nonnegative(),
    externals: z.array(str).max(10_000),
    warnings: z.array(z.string().max(65_536)).max(10_000),
    map: z.boolean(),
  }),
  z.strictObject({
    ok: z.literal(false),
    name: z.literal('SnapshotBuildError'),
    // Only the codes bundling can end in: the bundler cannot claim a platform fault.
    code: z.enum(['BundleFailed', 'InitFailed']),
    userMessage: z.string().max(65_536),
    errorType: z.string().max(256).optional(),
    details: z.array(z.string().max(65_536)).max(1000),
  }),
]);

export interface BundleStepOptions {
  readonly spawn: (req: { argv: readonly string[]; env: Readonly<Record<string, string>>; cwd: string; timeoutMs: number }) => Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; stderr: string }>;
  /** The Node binary and where the bundler, the code, the layers and the scratch directory are, as the process sees them. */
  readonly nodeBinary: string;
  readonly bundlerDir?: string;
  readonly codeDir: string;
  readonly optDir?: string;
  readonly outDir: string;
  /** The scratch directory on the host (where the result is read back). */
  readonly hostOutDir: string;
  readonly handler: string;
  readonly nodeMajor: number;
  readonly minify: boolean | 'whitespace';
  readonly timeoutMs: number;
}

/** Bundle the handler into outDir/bundle.cjs (+ .map) in a process of its own; throws SnapshotBuildError. */
export async function bundleStep(o: BundleStepOptions): Promise<BundleResult> {
  const started = performance.now();
  const request = {
    codeDir: o.codeDir,
    handler: o.handler,
    nodeMajor: o.nodeMajor,
    outFile: join(o.outDir, 'bundle.cjs'),
    taskRoot: o.codeDir,
    ...(o.optDir === undefined ? {} : { optDir: o.optDir, optRoot: o.optDir }),
    minify: o.minify,
    resultFile: join(o.outDir, RESULT_FILE),
  };
  const argv = [o.nodeBinary, join(o.bundlerDir ?? LIB_DIR, 'bundle-sandbox.js'), JSON.stringify(request)];
  const run = await o.spawn({ argv, env: { PATH: '/usr/bin:/bin' }, cwd: o.codeDir, timeoutMs: o.timeoutMs });
  if (run.timedOut) throw new SnapshotBuildError('BundleFailed', `SnapStart could not bundle the function within ${(o.timeoutMs / 1000).toFixed(1)} s`);
  const raw = await readOutput(o.hostOutDir, RESULT_FILE, MAX_RESULT_BYTES);
  let parsed: z.infer<typeof resultSchema> | undefined;
  try {
    const r = raw === undefined ? undefined : resultSchema.safeParse(JSON.parse(raw.toString('utf8')));
    parsed = r?.success === true ? r.data : undefined;
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined) {
    const why = run.code === 0 ? 'no usable result' : `exit ${run.code ?? run.signal}`;
    throw new SnapshotBuildError('BuildCrashed', `SnapStart could not bundle the function (the bundler ended with ${why})`, { details: [run.stderr.slice(-4096)] });
  }
  if (!parsed.ok) {
    throw new SnapshotBuildError(parsed.code, parsed.userMessage, { details: parsed.details, ...(parsed.errorType === undefined ? {} : { errorType: parsed.errorType }) });
  }
  const file = join(o.hostOutDir, 'bundle.cjs');
  return {
    file,
    ...(parsed.map ? { mapFile: `${file}.map` } : {}),
    sizeBytes: parsed.sizeBytes,
    sha256: parsed.sha256,
    taskFile: parsed.taskFile,
    exportPath: parsed.exportPath,
    inputs: parsed.inputs,
    externals: parsed.externals,
    warnings: parsed.warnings,
    durationMs: performance.now() - started,
  };
}
