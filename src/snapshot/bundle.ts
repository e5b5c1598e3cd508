import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import type { Logger } from '../util/log.js';
import { SnapshotBuildError } from './errors.js';

/**
 * Bundling a function's handler into ONE CommonJS file that a V8 startup snapshot can hold: inside
 * `node --build-snapshot` only built-in modules can be required, so the handler and everything it requires
 * from /var/task must be in a single script.
 *
 * What cannot be bundled is left external and decided at snapshot build time (snapshot-entry.cjs):
 * - Node built-ins: always external; the network modules among them are deferred (see snapshot-deferred.cjs).
 * - Native addons (`*.node`): external, rewritten to their absolute path inside the sandbox. Loading one
 *   during Init fails the build (a snapshot cannot hold native state); loading it later, in the handler, works.
 * - `require(expression)` and imports that do not resolve (optional dependencies): external. During Init they
 *   resolve like in a plain start: a module that does not exist throws MODULE_NOT_FOUND, one that exists but
 *   was not bundled fails the build; after restore they load from /var/task as usual.
 * - `thaw-snapstart`: the runtime hooks module, provided by the snapshot runtime.
 *
 * Every bundled file keeps its own `__dirname`, `__filename` and `import.meta.url`, as seen inside the sandbox
 * (`taskRoot`), so code that reads files next to itself keeps working.
 *
 * The platform runs this inside the build sandbox (bundle-sandbox.ts), where only the code and the layers are
 * there to read. As a second line, nothing outside the code and layer directories is bundled: a relative or
 * absolute import that leaves them fails the bundle (decided on the path as written, before anything is read,
 * so the answer says nothing about what exists there), and so does a file reached through a symbolic link.
 */

export interface BundleOptions {
  /** Host directory of the function's extracted code. */
  readonly codeDir: string;
  /** _HANDLER, e.g. `index.handler`, `src/app.api.v1.handler`. */
  readonly handler: string;
  /** Node major the bundle targets (24 for nodejs24.x). */
  readonly nodeMajor: number;
  /** Where the bundle is written. */
  readonly outFile: string;
  /** Where codeDir appears to the process that runs the bundle (default /var/task). */
  readonly taskRoot?: string;
  /**
   * Host directory of the function's layers (what the runtime sees at /opt), if it has any: bare imports also
   * resolve from its Node paths (nodejs/nodeNN/node_modules, nodejs/node_modules), as NODE_PATH makes them.
   */
  readonly optDir?: string;
  /** Where optDir appears to the process that runs the bundle (default /opt). */
  readonly optRoot?: string;
  /**
   * true: everything, identifiers included; 'whitespace': whitespace and syntax only, so every name in a stack
   * trace stays the source's; false (default): nothing.
   */
  readonly minify?: boolean | 'whitespace';
  /** Also write `${outFile}.map` (used to name the function's own file and line in build errors). */
  readonly sourcemap?: boolean;
  readonly logger?: Logger;
}

export interface BundleResult {
  readonly file: string;
  /** The source map, when asked for. */
  readonly mapFile?: string;
  readonly sizeBytes: number;
  readonly sha256: string;
  /** The handler's module as the runtime sees it, e.g. /var/task/index.js. */
  readonly taskFile: string;
  /** Property path of the handler in the module's exports, e.g. ['handler'] or ['api', 'v1', 'handler']. */
  readonly exportPath: readonly string[];
  /** Number of source files in the bundle. */
  readonly inputs: number;
  /** Specifiers left for run time: native addons, unresolved and dynamic requires (built-ins not listed). */
  readonly externals: readonly string[];
  readonly warnings: readonly string[];
  readonly durationMs: number;
}

/** Module specifier of the runtime hooks API; see docs/snapstart.md. */
export const HOOKS_MODULE = 'thaw-snapstart';

interface ParsedHandler {
  readonly moduleRoot: string;
  readonly moduleName: string;
  readonly exportPath: string[];
}

/** _HANDLER parsing exactly as the Node runtime does it (bootstrap.cjs loadHandler, after Lambda's UserFunction.js). */
export function parseHandler(handler: string): ParsedHandler {
  if (handler.includes('..')) {
    throw new SnapshotBuildError(
      'InitFailed',
      `'${handler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
      { errorType: 'Runtime.MalformedHandlerName' },
    );
  }
  const base = posix.basename(handler);
  const moduleRoot = handler.slice(0, handler.length - base.length);
  const match = /^([^.]*)\.(.*)$/.exec(base);
  if (match === null) throw new SnapshotBuildError('InitFailed', 'Bad handler', { errorType: 'Runtime.MalformedHandlerName' });
  const [, moduleName = '', handlerPath = ''] = match;
  return { moduleRoot, moduleName, exportPath: handlerPath.split('.') };
}

/** The handler's source file, in the runtime's order: as named, `.js`, `.mjs`, `.cjs`, then Node's resolution. */
function resolveHandlerFile(codeDir: string, h: ParsedHandler): string {
  const file = resolve(codeDir, h.moduleRoot, h.moduleName);
  const missing = (cause?: unknown): SnapshotBuildError =>
    new SnapshotBuildError('InitFailed', `Error: Cannot find module '${h.moduleName}'`, { errorType: 'Runtime.ImportModuleError', cause });
  if (toTaskPath(codeDir, '/', file) === undefined) throw missing();
  const isFile = (p: string): boolean => existsSync(p) && statSync(p).isFile();
  let found = [file, `${file}.js`, `${file}.mjs`, `${file}.cjs`].find(isFile);
  if (found === undefined) {
    const req = createRequire(join(codeDir, '__thaw_resolve__.js'));
    try {
      found = req.resolve(existsSync(file) ? file : h.moduleName, { paths: [codeDir, resolve(codeDir, h.moduleRoot)] });
    } catch (err) {
      throw missing(err);
    }
  }
  // Only the function's own files: not a package above the code root, not a symbolic link pointing out of it.
  if (toTaskPath(codeDir, '/', realpathSync(found)) === undefined) throw missing();
  return found;
}

/** Map a host path inside codeDir to the path the runtime sees; undefined for files outside codeDir. */
function toTaskPath(codeDir: string, taskRoot: string, hostPath: string): string | undefined {
  const rel = relative(codeDir, hostPath);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return undefined;
  return posix.join(taskRoot, rel.split(sep).join('/'));
}

/** Host directories and where the runtime sees them: the code, and the layers when there are any. */
interface Roots {
  readonly code: { readonly host: string; readonly view: string };
  readonly opt?: { readonly host: string; readonly view: string };
}

/** A host path as the runtime sees it (in the code or the layers); undefined for files elsewhere. */
function viewPath(roots: Roots, hostPath: string): string | undefined {
  return toTaskPath(roots.code.host, roots.code.view, hostPath)
    ?? (roots.opt === undefined ? undefined : toTaskPath(roots.opt.host, roots.opt.view, hostPath));
}

/** Offset just after a file's hashbang, comments and directive prologue ('use strict'): where a statement may go. */
export function afterPrologue(src: string): number {
  let i = src.charCodeAt(0) === 0xfeff ? 1 : 0;
  if (src.startsWith('#!', i)) {
    const nl = src.indexOf('\n', i);
    i = nl === -1 ? src.length : nl + 1;
  }
  let insertAt = i;
  for (;;) {
    const ws = /^[\s]*/.exec(src.slice(i, i + 4096));
    i += ws === null ? 0 : ws[0].length;
    if (src.startsWith('//', i)) {
      const nl = src.indexOf('\n', i);
      i = nl === -1 ? src.length : nl + 1;
      continue;
    }
    if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      i = end === -1 ? src.length : end + 2;
      continue;
    }
    const directive = /^(?:'[^'\\\n]*'|"[^"\\\n]*")[ \t]*(;|(?=\r?\n|$))/.exec(src.slice(i, i + 256));
    if (directive !== null) {
      i += directive[0].length;
      insertAt = i;
      continue;
    }
    return insertAt;
  }
}

const DECLARES_PATH_VARS = /\b(?:var|let|const|function|class)\s+(?:\{[^}]*\b)?__(?:dirname|filename)\b/;
const USES_PATH_VARS = /\b__(?:dirname|filename)\b/;
const IMPORT_META = /\bimport\.meta\.(url|filename|dirname)\b/g;

/** Per-file __dirname / __filename / import.meta.{url,filename,dirname}, as the runtime will see the file. */
export function rewriteLocation(src: string, taskFile: string): string | undefined {
  let out = src;
  let changed = false;
  if (src.includes('import.meta')) {
    out = out.replace(IMPORT_META, (_m, what: string) => {
      changed = true;
      if (what === 'url') return JSON.stringify(pathToFileURL(taskFile).href);
      return JSON.stringify(what === 'filename' ? taskFile : posix.dirname(taskFile));
    });
  }
  if (USES_PATH_VARS.test(out) && !DECLARES_PATH_VARS.test(out)) {
    const at = afterPrologue(out);
    const decl = `var __filename = ${JSON.stringify(taskFile)}, __dirname = ${JSON.stringify(posix.dirname(taskFile))};`;
    out = out.slice(0, at) + decl + out.slice(at);
    changed = true;
  }
  return changed ? out : undefined;
}

/** Where a host path is relative to the roots, for messages: `index.js`, `/opt/nodejs/x.js`, or undefined (elsewhere). */
function shown(roots: Roots, hostPath: string): string | undefined {
  const rel = relative(roots.code.host, hostPath);
  if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) return rel.split(sep).join('/');
  return roots.opt === undefined ? undefined : toTaskPath(roots.opt.host, roots.opt.view, hostPath);
}

/**
 * Nothing outside the code and layers: a relative or absolute import whose path (as written) leaves them fails,
 * and so does loading a file whose real path is elsewhere (a symbolic link in the code pointing out).
 */
function containmentPlugin(roots: Roots): esbuild.Plugin {
  const inside = (p: string): boolean => viewPath(roots, p) !== undefined;
  const outside = (what: string, importer: string): esbuild.PartialMessage => ({
    text: `${shown(roots, importer) ?? 'a file'} imports ${what}, which is outside the function's code and layers`,
  });
  return {
    name: 'thaw-containment',
    setup(build) {
      build.onResolve({ filter: /^(?:\.|\/|file:)/ }, (args) => {
        if (args.kind === 'entry-point') return undefined;
        let target: string;
        try {
          target = args.path.startsWith('file:') ? new URL(args.path).pathname : resolve(args.resolveDir, args.path);
        } catch {
          return { errors: [outside(JSON.stringify(args.path), args.importer)] };
        }
        return inside(target) ? undefined : { errors: [outside(JSON.stringify(args.path), args.importer)] };
      });
      build.onLoad({ filter: /.*/ }, (args) => {
        if (args.namespace !== 'file' || inside(args.path)) return undefined;
        return { errors: [{ text: `a file of the function resolves (through a symbolic link or a package path) outside the function's code and layers` }] };
      });
    },
  };
}

function locationPlugin(roots: Roots): esbuild.Plugin {
  return {
    name: 'thaw-location',
    setup(build) {
      build.onLoad({ filter: /\.(?:js|cjs|mjs)$/, namespace: 'file' }, async (args) => {
        const taskFile = viewPath(roots, args.path);
        if (taskFile === undefined) return undefined;
        const src = await readFile(args.path, 'utf8');
        const contents = rewriteLocation(src, taskFile);
        return contents === undefined ? { contents: src, loader: 'js' } : { contents, loader: 'js' };
      });
    },
  };
}

function nativeAddonPlugin(roots: Roots, found: Set<string>): esbuild.Plugin {
  return {
    name: 'thaw-native-addons',
    setup(build) {
      build.onResolve({ filter: /\.node$/ }, (args) => {
        const abs = isAbsolute(args.path) ? args.path : resolve(args.resolveDir, args.path);
        const path = viewPath(roots, abs) ?? args.path;
        found.add(path);
        return { path, external: true };
      });
    },
  };
}

/** A message with its location relative to the code root (or the layers); a location elsewhere is left out. */
function formatMessage(m: esbuild.Message, roots: Roots): string {
  const file = m.location === null ? undefined : shown(roots, resolve(roots.code.host, m.location.file));
  const loc = m.location === null || file === undefined ? '' : `${file}:${m.location.line}:${m.location.column + 1}: `;
  return `${loc}${m.text}`;
}

/** Bare or relative specifiers esbuild could not resolve, from its "Could not resolve" errors. */
function unresolved(errors: readonly esbuild.Message[]): string[] | undefined {
  const out: string[] = [];
  for (const e of errors) {
    const m = /^Could not resolve "([^"]+)"/.exec(e.text);
    if (m === null || m[1] === undefined) return undefined;
    out.push(m[1]);
  }
  return out;
}

async function writeSynced(file: string, data: Uint8Array): Promise<void> {
  const fh = await open(file, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Bundle a handler into one CommonJS file; throws SnapshotBuildError('BundleFailed' | 'InitFailed'). */
export async function bundleHandler(opts: BundleOptions): Promise<BundleResult> {
  const started = performance.now();
  const log = opts.logger;
  const codeDir = realpathSync(resolve(opts.codeDir));
  const taskRoot = opts.taskRoot ?? '/var/task';
  const parsed = parseHandler(opts.handler);
  const entry = resolveHandlerFile(codeDir, parsed);
  const taskFile = toTaskPath(codeDir, taskRoot, entry) ?? entry;
  const addons = new Set<string>();
  let external = [HOOKS_MODULE];
  const optDir = opts.optDir === undefined ? undefined : realpathSync(resolve(opts.optDir));
  const roots: Roots = {
    code: { host: codeDir, view: taskRoot },
    ...(optDir === undefined ? {} : { opt: { host: optDir, view: opts.optRoot ?? '/opt' } }),
  };
  // The layer paths Lambda puts on NODE_PATH, in its order.
  const nodePaths = optDir === undefined ? [] : [join(optDir, 'nodejs', `node${opts.nodeMajor}`, 'node_modules'), join(optDir, 'nodejs', 'node_modules')];

  let result: esbuild.BuildResult<{ write: false; metafile: true }> | undefined;
  for (let attempt = 0; result === undefined; attempt++) {
    try {
      result = await esbuild.build({
        entryPoints: [entry],
        absWorkingDir: codeDir,
        bundle: true,
        platform: 'node',
        format: 'cjs',
        target: `node${opts.nodeMajor}`,
        keepNames: true,
        ...(opts.minify === 'whitespace' ? { minifyWhitespace: true, minifySyntax: true } : { minify: opts.minify ?? false }),
        legalComments: opts.minify === undefined || opts.minify === false ? 'inline' : 'none',
        charset: 'utf8',
        sourcemap: opts.sourcemap === true ? 'external' : false,
        write: false,
        metafile: true,
        outfile: opts.outFile,
        logLevel: 'silent',
        external,
        nodePaths,
        plugins: [containmentPlugin(roots), nativeAddonPlugin(roots, addons), locationPlugin(roots)],
      });
    } catch (err) {
      const errors = (err as esbuild.BuildFailure).errors;
      if (!Array.isArray(errors)) throw new SnapshotBuildError('BundleFailed', `SnapStart could not bundle the function: ${(err as Error).message}`, { cause: err });
      const missing = unresolved(errors);
      if (missing !== undefined && attempt === 0) {
        // Like a plain start, a module that does not exist only fails if Init actually requires it.
        log?.debug({ missing }, 'snapshot bundle: unresolved imports left external');
        external = [...external, ...missing];
        continue;
      }
      const details = errors.map((e) => formatMessage(e, roots));
      const tla = errors.find((e) => e.text.startsWith('Top-level await'));
      const message =
        tla === undefined
          ? `SnapStart could not bundle the function: ${details[0] ?? 'unknown error'}${details.length > 1 ? ` (and ${details.length - 1} more)` : ''}`
          : `SnapStart for Node does not support top-level await (${formatMessage(tla, roots).split(': ')[0]}): do asynchronous Init in a beforeCheckpoint hook instead (see SnapStart runtime hooks)`;
      throw new SnapshotBuildError('BundleFailed', message, { details, cause: err });
    }
  }

  const out = result.outputFiles.find((f) => !f.path.endsWith('.map'));
  const map = result.outputFiles.find((f) => f.path.endsWith('.map'));
  if (out === undefined) throw new SnapshotBuildError('BundleFailed', 'SnapStart could not bundle the function: esbuild produced no output');
  await writeSynced(opts.outFile, out.contents);
  if (map !== undefined) await writeSynced(`${opts.outFile}.map`, map.contents);
  const warnings = result.warnings.map((w) => formatMessage(w, roots));
  const externals = [...addons, ...external.filter((e) => e !== HOOKS_MODULE)];
  const res: BundleResult = {
    file: opts.outFile,
    ...(map === undefined ? {} : { mapFile: `${opts.outFile}.map` }),
    sizeBytes: out.contents.length,
    sha256: createHash('sha256').update(out.contents).digest('hex'),
    taskFile,
    exportPath: parsed.exportPath,
    inputs: Object.keys(result.metafile.inputs).length,
    externals,
    warnings,
    durationMs: performance.now() - started,
  };
  log?.debug({ file: res.file, sizeBytes: res.sizeBytes, inputs: res.inputs, externals, warnings: warnings.length, ms: Math.round(res.durationMs) }, 'snapshot bundle written');
  return res;
}

