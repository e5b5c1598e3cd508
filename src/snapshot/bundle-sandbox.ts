import { writeFileSync } from 'node:fs';
import { bundleHandler } from './bundle.js';
import { isSnapshotBuildError } from './errors.js';

/**
 * The bundling step of a SnapStart build, as a program of its own: it runs INSIDE the build sandbox (started by
 * bundle-step.ts), where the function's code is at /var/task, its layers at /opt and nothing of the host's is
 * there to be read. It imports only bundle.ts, errors.ts and esbuild, which the sandbox mounts read-only.
 *
 *   node bundle-sandbox.js '{"codeDir":"/var/task","handler":"index.handler",...,"resultFile":"..."}'
 *
 * The outcome goes to `resultFile` as JSON, which the host checks against its schema (bundle-step.ts).
 */

interface BundleRequest {
  readonly codeDir: string;
  readonly handler: string;
  readonly nodeMajor: number;
  readonly outFile: string;
  readonly taskRoot: string;
  readonly optDir?: string;
  readonly optRoot?: string;
  readonly minify: boolean | 'whitespace';
  readonly resultFile: string;
}

const req = JSON.parse(process.argv[2] ?? '{}') as BundleRequest;
let result: unknown;
try {
  const r = await bundleHandler({
    codeDir: req.codeDir,
    handler: req.handler,
    nodeMajor: req.nodeMajor,
    outFile: req.outFile,
    taskRoot: req.taskRoot,
    ...(req.optDir === undefined ? {} : { optDir: req.optDir, optRoot: req.optRoot ?? req.optDir }),
    minify: req.minify,
    sourcemap: true,
  });
  result = {
    ok: true,
    sizeBytes: r.sizeBytes,
    sha256: r.sha256,
    taskFile: r.taskFile,
    exportPath: r.exportPath,
    inputs: r.inputs,
    externals: r.externals,
    warnings: r.warnings,
    map: r.mapFile !== undefined,
  };
} catch (err) {
  result = isSnapshotBuildError(err)
    ? { ok: false, ...err.toJSON() }
    : { ok: false, name: 'SnapshotBuildError', code: 'BundleFailed', userMessage: `SnapStart could not bundle the function: ${(err as Error).message}`, details: [] };
}
writeFileSync(req.resultFile, JSON.stringify(result));
