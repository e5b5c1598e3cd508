/**
 * `thaw snapcheck`: a static scan of a Node function for code that is not snapshot-safe. Only code that runs
 * while the module loads (Init) matters: top-level statements, functions invoked immediately at top level,
 * class static blocks and static fields. The same calls inside the handler are the right place and are not
 * flagged. Files are parsed with TypeScript's compiler API, loaded on demand (it is a devDependency of Thaw, so
 * the check works where Thaw was installed from source and says so clearly where it was not).
 *
 * Names are resolved per file, without scopes: `require('crypto')`, `import crypto from 'node:crypto'`,
 * `import { randomUUID } from 'crypto'`, `const { randomUUID: r } = require('crypto')`, `globalThis.X` and
 * plain globals. A name declared at top level by the file itself (`function fetch() {}`) is not a global.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type TS from 'typescript';

export type SnapRule = 'entropy-at-init' | 'time-at-init' | 'connection-at-init' | 'handle-at-init';
export type SnapSeverity = 'error' | 'warning';

export interface SnapFinding {
  /** The scanned PATH joined with the file's place under it: reachable from where the check was run. */
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  /** 1-based. */
  readonly column: number;
  readonly rule: SnapRule;
  readonly severity: SnapSeverity;
  readonly message: string;
  /** One line: what to do instead. */
  readonly fix: string;
}

export interface SnapcheckOptions {
  /** Scan node_modules too (default: only the function's own files). */
  readonly includeDeps?: boolean;
}

export interface SnapcheckResult {
  /** Files scanned, as they appear in findings. */
  readonly files: readonly string[];
  readonly findings: readonly SnapFinding[];
}

export const SNAPCHECK_ERRORS = {
  /** PATH does not exist. */
  SNAPCHECK_NOT_FOUND: 'user',
  /** PATH is neither a folder nor a .js/.mjs/.cjs file. */
  SNAPCHECK_BAD_PATH: 'user',
  /** The `typescript` package (the parser) is not installed. */
  SNAPCHECK_NO_PARSER: 'system',
} as const;

export class SnapcheckError extends Error {
  override readonly name = 'SnapcheckError';
  constructor(readonly code: keyof typeof SNAPCHECK_ERRORS, message: string, opts?: { cause?: unknown }) {
    super(message, opts);
  }
}

const EXTENSIONS = new Set(['.js', '.mjs', '.cjs']);
/** Larger files are generated (bundles, data): not the function's own Init code. */
const MAX_FILE_BYTES = 8 * 1024 * 1024;

// ---- what is a hazard -----------------------------------------------------------------------------------

interface Hazard {
  readonly rule: SnapRule;
  readonly severity: SnapSeverity;
  /** `%s` is what is called, e.g. `crypto.randomUUID()` (arguments left out). */
  readonly message: string;
  /** `%s` is the whole call as written (arguments too); `%v` the variable the value is stored in, or 'value'. */
  readonly fix: string;
}

const HOOK = 'globalThis.thaw?.snapstart.registerAfterRestore';

const ENTROPY: Hazard = {
  rule: 'entropy-at-init',
  severity: 'error',
  message: '%s runs during Init: the random value is stored in the snapshot and is the same in every restored environment',
  fix: `Generate it in the handler, or refresh it in an afterRestore hook: ${HOOK}(() => { %v = %s; })`,
};
const TIME: Hazard = {
  rule: 'time-at-init',
  severity: 'warning',
  message: '%s runs during Init: it reads the time of the publish, frozen in the snapshot, not the time of the cold start',
  fix: `Read the clock in the handler, or refresh it in an afterRestore hook: ${HOOK}(() => { %v = %s; })`,
};
const CONNECTION: Hazard = {
  rule: 'connection-at-init',
  severity: 'error',
  message: '%s opens a connection during Init: a snapshot cannot hold a socket, so the publish fails',
  fix: `Open it on first use in the handler (and reuse it), or in an afterRestore hook: ${HOOK}(async () => { ... })`,
};
const CONNECT_CALL: Hazard = {
  rule: 'connection-at-init',
  severity: 'warning',
  message: '%s looks like a client connecting during Init: an open connection cannot be kept in the snapshot',
  fix: `Connect on first use or in an afterRestore hook (${HOOK}(() => ...)); if it must connect at Init, close it in registerBeforeCheckpoint`,
};
const INTERVAL: Hazard = {
  rule: 'handle-at-init',
  severity: 'error',
  message: '%s during Init leaves a timer pending: the publish fails with OpenHandles',
  fix: `Start it in an afterRestore hook: ${HOOK}(() => { %s; })`,
};
const TIMEOUT: Hazard = {
  rule: 'handle-at-init',
  severity: 'warning',
  message: '%s during Init: a timer due within a second is waited for, a later one fails the publish with OpenHandles',
  fix: `Schedule it in the handler, or in an afterRestore hook: ${HOOK}(() => { %s; })`,
};
const LISTEN: Hazard = {
  rule: 'handle-at-init',
  severity: 'error',
  message: '%s during Init leaves a listening server open: the publish fails with OpenHandles',
  fix: 'Export a handler instead of listening on a port; a function is invoked through its handler',
};
const HANDLE: Hazard = {
  rule: 'handle-at-init',
  severity: 'error',
  message: '%s during Init leaves a handle open (child process, watcher or worker): the publish fails with OpenHandles',
  fix: `Start it in the handler or in an afterRestore hook (${HOOK}(() => { ... })); for a child process Init must wait for, use the *Sync variant`,
};

/** Calls, by resolved name. */
const CALLS: ReadonlyMap<string, Hazard> = new Map([
  ...['Math.random', 'crypto.randomUUID', 'crypto.randomBytes', 'crypto.getRandomValues', 'crypto.randomInt', 'uuid.v1', 'uuid.v4', 'uuid.v7', 'nanoid', 'nanoid.nanoid'].map((n) => [n, ENTROPY] as const),
  ...['Date.now', 'Date', 'performance.now', 'process.hrtime', 'process.hrtime.bigint'].map((n) => [n, TIME] as const),
  ...['net.connect', 'net.createConnection', 'tls.connect', 'http.request', 'http.get', 'https.request', 'https.get', 'http2.connect', 'fetch', 'undici.request', 'dgram.createSocket'].map((n) => [n, CONNECTION] as const),
  ['setInterval', INTERVAL],
  ['setTimeout', TIMEOUT],
  ...['fs.watch', 'fs.watchFile', 'child_process.spawn', 'child_process.exec', 'child_process.execFile', 'child_process.fork'].map((n) => [n, HANDLE] as const),
]);

/** `new X(...)`, by resolved name. `new Date()` only without arguments. */
const NEWS: ReadonlyMap<string, Hazard> = new Map([
  ['Date', TIME],
  ['WebSocket', CONNECTION],
  ['ws', CONNECTION],
  ['Worker', HANDLE],
  ['worker_threads.Worker', HANDLE],
]);

/** Module specifiers as names: `node:` dropped, sub-paths folded into the module they mirror. */
const MODULE_NAMES: Readonly<Record<string, string>> = {
  'fs/promises': 'fs',
  timers: '',
  'nanoid/non-secure': 'nanoid',
  'node-fetch': 'fetch',
  'cross-fetch': 'fetch',
};
/** Resolved names that are another name (`crypto.webcrypto.getRandomValues` is `crypto.getRandomValues`). */
const SAME_AS: Readonly<Record<string, string>> = {
  'crypto.webcrypto': 'crypto',
  'perf_hooks.performance': 'performance',
  'ws.WebSocket': 'ws',
  'undici.fetch': 'fetch',
  'undici.WebSocket': 'WebSocket',
  'fetch.default': 'fetch',
  'uuid.default': 'uuid',
};
const GLOBAL_OBJECTS = new Set(['globalThis', 'global', 'self', 'window']);

// ---- scanning ---------------------------------------------------------------------------------------------

let parser: Promise<typeof TS> | undefined;

/** TypeScript's compiler API, loaded once; SnapcheckError SNAPCHECK_NO_PARSER when it is not installed. */
export function loadParser(): Promise<typeof TS> {
  if (parser !== undefined) return parser;
  const loading = import('typescript').then(
    // A CommonJS package: its exports are the default export.
    (m) => m.default,
    (e: unknown) => {
      parser = undefined;
      throw new SnapcheckError('SNAPCHECK_NO_PARSER', "thaw snapcheck needs the 'typescript' package to parse JavaScript; install it next to Thaw (npm install --no-save typescript)", { cause: e });
    },
  );
  parser = loading;
  return loading;
}

/** Scan a folder (the function's own files; node_modules only with includeDeps) or a single file. */
export async function snapcheck(target: string, opts: SnapcheckOptions = {}): Promise<SnapcheckResult> {
  const st = await stat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') throw new SnapcheckError('SNAPCHECK_NOT_FOUND', `${target}: no such file or folder`);
    throw e;
  });
  let files: string[];
  if (st.isDirectory()) files = (await listFiles(target, opts.includeDeps === true)).map((rel) => path.join(target, rel));
  else if (st.isFile() && EXTENSIONS.has(path.extname(target))) files = [target];
  else throw new SnapcheckError('SNAPCHECK_BAD_PATH', `${target}: not a folder or a .js, .mjs or .cjs file`);
  const ts = await loadParser();
  const findings: SnapFinding[] = [];
  for (const file of files) findings.push(...scanSource(ts, file, await readFile(file, 'utf8')));
  return { files, findings };
}

/** Files under root with a JavaScript extension, relative to root, sorted; dot-folders and symlinks skipped. */
async function listFiles(root: string, includeDeps: boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(path.join(root, rel), { withFileTypes: true });
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const child = rel === '' ? e.name : path.join(rel, e.name);
      if (e.isDirectory()) {
        if (e.name.startsWith('.') || (e.name === 'node_modules' && !includeDeps)) continue;
        await walk(child);
      } else if (e.isFile() && EXTENSIONS.has(path.extname(e.name))) {
        if ((await stat(path.join(root, child))).size <= MAX_FILE_BYTES) out.push(child);
      }
    }
  };
  await walk('');
  return out;
}

/** The Init hazards in one file's source. `file` is only used to label findings. */
export function scanSource(ts: typeof TS, file: string, text: string): SnapFinding[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const names = collectNames(ts, sf);
  const refreshed = refreshedInHooks(ts, sf);
  const findings: SnapFinding[] = [];

  const unwrap = (e: TS.Expression): TS.Expression => {
    while (ts.isParenthesizedExpression(e) || ts.isNonNullExpression(e) || ts.isAsExpression(e) || ts.isTypeAssertionExpression(e)) e = e.expression;
    return e;
  };

  /** A dotted name for what an expression refers to (`crypto.randomUUID`), or undefined. */
  const resolve = (expr: TS.Expression): string | undefined => {
    const e = unwrap(expr);
    if (ts.isIdentifier(e)) {
      if (names.modules.has(e.text)) return names.modules.get(e.text);
      return names.locals.has(e.text) ? undefined : e.text;
    }
    if (ts.isPropertyAccessExpression(e) || ts.isElementAccessExpression(e)) {
      const key = ts.isPropertyAccessExpression(e) ? e.name.text : ts.isStringLiteralLike(e.argumentExpression) ? e.argumentExpression.text : undefined;
      const base = key === undefined ? undefined : resolve(e.expression);
      if (key === undefined || base === undefined) return undefined;
      if (GLOBAL_OBJECTS.has(base)) return key;
      const joined = base === '' ? key : `${base}.${key}`;
      return SAME_AS[joined] ?? joined;
    }
    const module = requiredModule(ts, e);
    return module === undefined ? undefined : moduleName(module);
  };

  const report = (node: TS.Node, hazard: Hazard, callee: TS.Expression): void => {
    const target = assignedTo(ts, node);
    if ((hazard === ENTROPY || hazard === TIME) && target !== undefined && refreshed.has(target)) return;
    const call = `${shorten(callee.getText(sf))}()`;
    const written = ts.isNewExpression(node) ? `new ${call}` : call;
    const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    findings.push({
      file,
      line: line + 1,
      column: character + 1,
      rule: hazard.rule,
      severity: hazard.severity,
      message: hazard.message.replace('%s', () => written),
      // One pass, so that a '%' in the code itself is left alone.
      fix: hazard.fix.replace(/%[sv]/g, (m) => (m === '%s' ? shorten(node.getText(sf)) : target ?? 'value')),
    });
  };

  const check = (node: TS.Node): void => {
    if (ts.isCallExpression(node)) {
      const name = resolve(node.expression);
      const hazard = name === undefined ? undefined : CALLS.get(name);
      if (hazard !== undefined) return report(node, hazard, node.expression);
      const callee = unwrap(node.expression);
      if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'connect') return report(node, CONNECT_CALL, callee);
      if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'listen') return report(node, LISTEN, callee);
    } else if (ts.isNewExpression(node)) {
      const name = resolve(node.expression);
      const hazard = name === undefined ? undefined : NEWS.get(name);
      if (hazard === TIME && (node.arguments?.length ?? 0) > 0) return;
      if (hazard !== undefined) report(node, hazard, node.expression);
    }
  };

  /** Walk code that runs at Init; a function body is Init only when the function is invoked right there. */
  const visit = (node: TS.Node): void => {
    if (ts.isFunctionLike(node) && !isInvokedImmediately(ts, node)) return;
    if (ts.isPropertyDeclaration(node) && !isStatic(ts, node)) {
      // Instance fields are initialised by the constructor; only a computed key runs at class definition.
      if (ts.isComputedPropertyName(node.name)) visit(node.name);
      return;
    }
    check(node);
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sf, visit);
  return findings;
}

/** `require('x')` (also `require("node:x")`) → 'x'. */
function requiredModule(ts: typeof TS, e: TS.Expression): string | undefined {
  if (!ts.isCallExpression(e) || !ts.isIdentifier(e.expression) || e.expression.text !== 'require') return undefined;
  const arg = e.arguments[0];
  return arg !== undefined && ts.isStringLiteralLike(arg) ? arg.text : undefined;
}

function moduleName(specifier: string): string {
  const s = specifier.startsWith('node:') ? specifier.slice(5) : specifier;
  return MODULE_NAMES[s] ?? s;
}

interface Names {
  /** Local name → what it stands for (`randomUUID` → 'crypto.randomUUID', `crypto` → 'crypto'). */
  readonly modules: Map<string, string>;
  /** Names the file declares at top level for its own values: not globals. */
  readonly locals: Set<string>;
}

/**
 * Module bindings from imports and `require` anywhere in the file (bundles put them inside a wrapper
 * function), and the file's own top-level names.
 */
function collectNames(ts: typeof TS, sf: TS.SourceFile): Names {
  const modules = new Map<string, string>();
  const locals = new Set<string>();

  /** The dotted name a `require(...)` / `require(...).a.b` / `alias.a` initializer stands for. */
  const moduleRef = (e: TS.Expression): string | undefined => {
    while (ts.isParenthesizedExpression(e)) e = e.expression;
    const req = requiredModule(ts, e);
    if (req !== undefined) return moduleName(req);
    if (ts.isIdentifier(e)) return modules.get(e.text);
    if (ts.isPropertyAccessExpression(e)) {
      const base = moduleRef(e.expression);
      if (base === undefined) return undefined;
      const joined = base === '' ? e.name.text : `${base}.${e.name.text}`;
      return SAME_AS[joined] ?? joined;
    }
    return undefined;
  };
  const member = (base: string, key: string): string => {
    const joined = base === '' ? key : `${base}.${key}`;
    return SAME_AS[joined] ?? joined;
  };

  const bind = (name: TS.BindingName, ref: string | undefined, topLevel: boolean): void => {
    if (ts.isIdentifier(name)) {
      if (ref !== undefined) modules.set(name.text, ref);
      else if (topLevel) locals.add(name.text);
      return;
    }
    for (const el of name.elements) {
      if (ts.isOmittedExpression(el)) continue;
      const key = ts.isObjectBindingPattern(name) ? propertyKey(ts, el.propertyName ?? el.name) : undefined;
      bind(el.name, ref !== undefined && key !== undefined && el.dotDotDotToken === undefined ? member(ref, key) : undefined, topLevel);
    }
  };

  const visit = (node: TS.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier) && node.importClause !== undefined) {
      const mod = moduleName(node.moduleSpecifier.text);
      const clause = node.importClause;
      if (clause.name !== undefined) modules.set(clause.name.text, mod);
      const nb = clause.namedBindings;
      if (nb !== undefined && ts.isNamespaceImport(nb)) modules.set(nb.name.text, mod);
      else if (nb !== undefined) for (const s of nb.elements) modules.set(s.name.text, member(mod, (s.propertyName ?? s.name).text));
    } else if (ts.isVariableDeclaration(node)) {
      const topLevel = ts.isVariableDeclarationList(node.parent) && ts.isVariableStatement(node.parent.parent) && node.parent.parent.parent === sf;
      bind(node.name, node.initializer === undefined ? undefined : moduleRef(node.initializer), topLevel);
    } else if ((ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node)) && node.parent === sf && node.name !== undefined) {
      locals.add(node.name.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  for (const name of modules.keys()) locals.delete(name);
  return { modules, locals };
}

function propertyKey(ts: typeof TS, n: TS.PropertyName | TS.BindingName): string | undefined {
  if (ts.isIdentifier(n) || ts.isStringLiteralLike(n) || ts.isNumericLiteral(n)) return n.text;
  return undefined;
}

/** Variables (or `obj.prop` targets) that an afterRestore hook assigns: their Init value is refreshed. */
function refreshedInHooks(ts: typeof TS, sf: TS.SourceFile): Set<string> {
  const out = new Set<string>();
  const collect = (node: TS.Node): void => {
    if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.EqualsToken) out.add(node.left.getText(sf));
    ts.forEachChild(node, collect);
  };
  const visit = (node: TS.Node): void => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const name = ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : undefined;
      if (name === 'registerAfterRestore') node.arguments.forEach(collect);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** The variable or property a call's value is stored in (`const id = f()`, `x.id = f()`), if any. */
function assignedTo(ts: typeof TS, node: TS.Node): string | undefined {
  for (let n: TS.Node = node; !ts.isStatement(n) && !ts.isSourceFile(n); n = n.parent) {
    const p = n.parent;
    if (ts.isVariableDeclaration(p) && p.initializer === n) return ts.isIdentifier(p.name) ? p.name.text : undefined;
    if (ts.isBinaryExpression(p) && p.right === n && p.operatorToken.kind === ts.SyntaxKind.EqualsToken) return p.left.getText(n.getSourceFile());
    if (ts.isPropertyDeclaration(p) && p.initializer === n) return undefined;
  }
  return undefined;
}

/** `(function () {})()`, `(() => {})()`, `!function () {}()`, `(function () {}).call(this)`, `new function () {}`. */
function isInvokedImmediately(ts: typeof TS, fn: TS.SignatureDeclaration): boolean {
  if (!ts.isFunctionExpression(fn) && !ts.isArrowFunction(fn)) return false;
  let callee: TS.Node = fn;
  while (ts.isParenthesizedExpression(callee.parent)) callee = callee.parent;
  const p = callee.parent;
  if ((ts.isCallExpression(p) || ts.isNewExpression(p)) && p.expression === callee) return true;
  return ts.isPropertyAccessExpression(p) && p.expression === callee && (p.name.text === 'call' || p.name.text === 'apply') &&
    ts.isCallExpression(p.parent) && p.parent.expression === p;
}

function isStatic(ts: typeof TS, node: TS.PropertyDeclaration): boolean {
  return node.modifiers?.some((m) => m.kind === ts.SyntaxKind.StaticKeyword) ?? false;
}

function shorten(s: string): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
}
