// @ts-check
'use strict';
/**
 * SnapStart for Node: the script that builds a function's V8 startup snapshot, and the main function of every
 * process restored from it. Runs INSIDE the sandbox.
 *
 * Build (once, when a version is published):
 *
 *   node --snapshot-blob OUT --build-snapshot /var/runtime/snapshot-entry.cjs \
 *     --bundle B --task-file /var/task/index.js --handler-path handler --builtins C --report R
 *
 *   B is the handler bundled into one CommonJS file (src/snapshot/bundle.ts), C the description of the
 *   built-ins that cannot be snapshotted (snapshot-probe.cjs, same binary), R where the outcome is written as
 *   JSON. The process runs Init (the bundle's top level), the beforeCheckpoint hooks, waits for Init's
 *   leftover work, refuses what a snapshot cannot hold (open sockets, timers, deferred built-ins used during
 *   Init, native addons), then lets Node write the snapshot.
 *
 * Restore (every cold start):
 *
 *   node --snapshot-blob OUT -- [--runtime-api-socket PATH]
 *
 *   with the function's environment (AWS_LAMBDA_RUNTIME_API when there is no socket). Everything that depends
 *   on the environment is read here, at restore: entropy caches are left empty or refilled, deferred built-ins
 *   become real, the console, Runtime API target and function info come from this process's argv and env.
 *   Then: GET /runtime/restore/next (the environment answers once it considers the process restored),
 *   afterRestore hooks (a failure is posted to /runtime/restore/error and the process exits), then the
 *   bootstrap's invocation loop (/runtime/invocation/next).
 *
 * Inside `node --build-snapshot` `require` knows only built-ins, so this file compiles its siblings, the
 * bootstrap and the bundle itself (indirect eval, one file name per script for stack traces).
 */

const fs = require('node:fs');
const path = require('node:path');
const v8 = require('node:v8');

const HOOKS_MODULE = 'thaw-snapstart';
/** A timer due within this long is Init's work in progress: wait for it rather than refuse it. */
const SOON_MS = 1000;
/** How long leftover work (closing sockets, timers due soon, fs requests) may take after the hooks. */
const SETTLE_MS = 1500;
const EXIT_BUILD_FAILED = 3;

/**
 * @typedef {{ what: string, site?: string }} Detail
 * @typedef {{ ok: true, initMs: number, settleMs: number, hooks: { before: number, after: number }, deferred: string[],
 *   pools: number, signals: number, handlerIsAsync: boolean }
 *   | { ok: false, code: 'InitFailed' | 'HookFailed' | 'OpenHandles' | 'Unsupported', message: string,
 *   errorType?: string, details: Detail[] }} Report
 */

/** @param {string[]} argv */
function parseArgs(argv) {
  /** @type {Record<string, string>} */
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === undefined || !k.startsWith('--') || v === undefined) throw new Error(`snapshot-entry: bad argument ${k}`);
    out[k.slice(2)] = v;
  }
  for (const k of ['bundle', 'task-file', 'handler-path', 'builtins', 'report']) {
    if (out[k] === undefined) throw new Error(`snapshot-entry: --${k} is required`);
  }
  return {
    bundle: /** @type {string} */ (out.bundle),
    taskFile: /** @type {string} */ (out['task-file']),
    exportPath: /** @type {string} */ (out['handler-path']).split('.'),
    builtins: /** @type {string} */ (out.builtins),
    report: /** @type {string} */ (out.report),
  };
}

/**
 * Compile CommonJS source into this snapshot. The wrapper stays on line 1 so that line numbers hold.
 * @param {string} file @param {string} source @param {string[]} [outer] names bound around the module scope
 * @returns {Function}
 */
function compile(file, source, outer = []) {
  const body = source.startsWith('#!') ? `//${source.slice(2)}` : source;
  const inner = `function (exports, require, module, __filename, __dirname) {${body}\n}`;
  const text = outer.length === 0 ? `(${inner})` : `(function (${outer.join(', ')}) { return ${inner}; })`;
  return (0, eval)(`${text}\n//# sourceURL=${file}`);
}

/** The first stack frame outside this runtime and Node itself, as FILE:LINE:COL. @param {string | undefined} stack */
function userSite(stack) {
  if (stack === undefined) return undefined;
  for (const line of stack.split('\n').slice(1)) {
    const m = /\(?([^\s()]+):(\d+):(\d+)\)?$/.exec(line.trim());
    if (m === null || m[1] === undefined) continue;
    const file = m[1];
    if (file.startsWith('node:') || file.startsWith(__dirname + path.sep)) continue;
    return `${file}:${m[2]}:${m[3]}`;
  }
  return undefined;
}

function build() {
  if (!v8.startupSnapshot.isBuildingSnapshot()) {
    process.stderr.write('snapshot-entry.cjs must be run with node --snapshot-blob OUT --build-snapshot\n');
    process.exit(2);
  }
  const args = parseArgs(process.argv.slice(2));
  // Before anything wraps them: the entry's own waiting must not look like Init's timers.
  const realSetTimeout = globalThis.setTimeout;
  /** @param {Report} r */
  const writeReport = (r) => fs.writeFileSync(args.report, JSON.stringify(r));
  /** @param {Extract<Report, { ok: false }>} r @returns {never} */
  const fail = (r) => {
    writeReport(r);
    process.exit(EXIT_BUILD_FAILED);
  };

  /** @type {Map<string, { exports: any }>} */
  const runtimeModules = new Map();
  /** Require for runtime files: built-ins (deferred where needed) and relative files, compiled into the snapshot. */
  const runtimeRequire = (/** @type {string} */ from) => (/** @type {string} */ id) => {
    if (id.startsWith('./') || id.startsWith('../')) return loadRuntime(path.resolve(path.dirname(from), id));
    return builtin(id);
  };
  /** @param {string} file */
  const loadRuntime = (file) => {
    const known = runtimeModules.get(file);
    if (known !== undefined) return known.exports;
    const mod = { exports: {} };
    runtimeModules.set(file, mod);
    compile(file, fs.readFileSync(file, 'utf8')).call(mod.exports, mod.exports, runtimeRequire(file), mod, file, path.dirname(file));
    return mod.exports;
  };

  const { createDeferred } = loadRuntime(path.join(__dirname, 'snapshot-deferred.cjs'));
  const { installEntropy } = loadRuntime(path.join(__dirname, 'snapshot-entropy.cjs'));
  const { installTracking } = loadRuntime(path.join(__dirname, 'snapshot-handles.cjs'));
  const { createHooks } = loadRuntime(path.join(__dirname, 'snapshot-hooks.cjs'));

  const deferred = createDeferred({ builtinRequire: require, catalogue: v8.deserialize(fs.readFileSync(args.builtins)) });
  /** A built-in, or its stand-in when it cannot be in a snapshot. @param {string} id */
  function builtin(id) {
    const name = id.startsWith('node:') ? id.slice(5) : id;
    if (deferred.isDeferred(name)) return deferred.module(name, id);
    return require(id);
  }

  const crypto = require('node:crypto');
  const entropy = installEntropy(crypto, crypto.webcrypto);
  const handles = installTracking({ net: require('node:net'), timers: require('node:timers'), os: require('node:os') });
  const hooks = createHooks();
  Object.defineProperty(globalThis, 'thaw', { value: Object.freeze({ snapstart: hooks.api }), enumerable: false, configurable: true, writable: false });

  const rt = loadRuntime(path.join(__dirname, 'bootstrap.cjs'));
  rt.patchConsole(process.env);

  let restored = false;
  /** @type {((id: string) => any) | undefined} */
  let taskRequire;
  /** Node's own require for /var/task, after restore (or to resolve during Init). */
  const nodeRequire = () => (taskRequire ??= require('node:module').createRequire(args.taskFile));

  /** `require` as the bundle sees it: what esbuild left external. @param {string} id */
  function userRequire(id) {
    if (id === HOOKS_MODULE) return hooks.api;
    if (typeof id !== 'string') return require(id); // Node's own ERR_INVALID_ARG_TYPE
    try {
      return builtin(id);
    } catch (err) {
      if (/** @type {any} */ (err)?.code !== 'MODULE_NOT_FOUND') throw err;
    }
    if (restored) return nodeRequire()(id);
    if (id.endsWith('.node')) {
      throw unsupported(`Init loaded the native addon ${id}`, 'a snapshot cannot hold native addons: require it inside the handler instead');
    }
    // Throws MODULE_NOT_FOUND, as a plain start would, when the module does not exist (an optional dependency).
    const resolved = /** @type {any} */ (nodeRequire()).resolve(id);
    throw unsupported(`Init required '${id}' (${resolved}), which could not be bundled (a require() with a computed name)`, 'require it with a literal name, or inside the handler');
  }
  userRequire.resolve = (/** @type {string} */ id, /** @type {any} */ opts) =>
    id === HOOKS_MODULE || isBuiltinId(id) ? id : /** @type {any} */ (nodeRequire()).resolve(id, opts);
  userRequire.cache = Object.create(null);
  /** @type {any} */ (userRequire).main = undefined;

  /** @type {Detail[]} */
  const extraViolations = [];
  /** @param {string} what @param {string} advice */
  function unsupported(what, advice) {
    const err = new Error(`${what}: ${advice}`);
    extraViolations.push({ what: `${what}: ${advice}`, site: userSite(err.stack) });
    return Object.assign(err, { code: 'ERR_THAW_SNAPSTART_UNSUPPORTED' });
  }
  /** @param {string} id */
  function isBuiltinId(id) {
    try {
      builtin(id);
      return true;
    } catch {
      return false;
    }
  }

  /** Unsupported uses during Init, if any, as the failure to report (they explain any Init error that follows). */
  const violationFailure = () => {
    /** @type {Detail[]} */
    const details = [
      ...deferred.violations.map((/** @type {{ what: string, stack: string | undefined }} */ v) => ({ what: v.what, site: userSite(v.stack) })),
      ...extraViolations,
    ];
    if (details.length === 0) return undefined;
    const first = /** @type {Detail} */ (details[0]);
    const where = first.site === undefined ? '' : ` (at ${first.site})`;
    const more = details.length > 1 ? ` (and ${details.length - 1} more)` : '';
    return /** @type {const} */ ({
      ok: false,
      code: 'Unsupported',
      message: `Init used ${first.what}${where}${more}. SnapStart for Node cannot snapshot network clients, servers or native addons while Init runs: create them in the handler or in an afterRestore hook.`,
      details,
    });
  };

  /** @param {unknown} err @returns {never} */
  const initFailed = (err) => {
    const v = violationFailure();
    if (v !== undefined) fail(v);
    const r = rt.toRapidResponse(err);
    const site = userSite(/** @type {any} */ (err)?.stack);
    fail({ ok: false, code: 'InitFailed', errorType: r.errorType, message: `${r.errorType}: ${r.errorMessage}`, details: site === undefined ? [] : [{ what: `${r.errorType}: ${r.errorMessage}`, site }] });
  };
  /** @param {unknown} err */
  const onUncaught = (err) => {
    rt.logError('Uncaught Exception', err);
    initFailed(err);
  };
  /** @param {unknown} reason */
  const onRejection = (reason) => onUncaught(reason);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onRejection);

  // ---- Init: the function's top level ----
  const initStarted = performance.now();
  /** @type {{ exports: any }} */
  const mod = { exports: {} };
  const globalNames = deferred.globalNames();
  let fn;
  try {
    const source = fs.readFileSync(args.bundle, 'utf8');
    const outer = compile(args.bundle, source, globalNames);
    const inner = outer(...globalNames.map((/** @type {string} */ n) => deferred.global(n)));
    inner.call(mod.exports, mod.exports, userRequire, mod, args.taskFile, path.posix.dirname(args.taskFile));
    fn = mod.exports;
    for (const key of args.exportPath) fn = fn && fn[key];
  } catch (err) {
    if (err instanceof SyntaxError) initFailed(Object.assign(new Error(String(err)), { name: 'Runtime.UserCodeSyntaxError' }));
    rt.logError('Uncaught Exception', err);
    initFailed(err);
  }
  const handlerName = `${path.posix.basename(args.taskFile).replace(/\.[cm]?js$/, '')}.${args.exportPath.join('.')}`;
  if (!fn) initFailed(Object.assign(new Error(`${handlerName} is undefined or not exported`), { name: 'Runtime.HandlerNotFound' }));
  if (typeof fn !== 'function') initFailed(Object.assign(new Error(`${handlerName} is not a function`), { name: 'Runtime.HandlerNotFound' }));
  const handler = /** @type {Function} */ (fn);
  const initMs = performance.now() - initStarted;

  const afterHooks = async () => {
    const v = violationFailure();
    if (v !== undefined) fail(v);
    // ---- beforeCheckpoint hooks ----
    try {
      await hooks.runBefore();
    } catch (err) {
      const v2 = violationFailure();
      if (v2 !== undefined) fail(v2);
      rt.logError('beforeCheckpoint hook failed', err);
      const r = rt.toRapidResponse(err);
      fail({ ok: false, code: 'HookFailed', errorType: r.errorType, message: `A beforeCheckpoint hook failed: ${r.errorType}: ${r.errorMessage}`, details: [{ what: `${r.errorType}: ${r.errorMessage}`, site: userSite(/** @type {any} */ (err)?.stack) }] });
    }
    // ---- let Init's leftover work finish, then refuse what cannot be in a snapshot ----
    // One turn of the event loop first: rejections Init left unhandled are reported only after the microtasks.
    await new Promise((resolve) => setImmediate(resolve));
    const settleStarted = performance.now();
    let scan = handles.scan(SOON_MS);
    while (scan.findings.length > 0 || scan.pendingSoon > 0 || scan.requests > 0 || scan.immediates > 0) {
      if (performance.now() - settleStarted > SETTLE_MS && scan.findings.length > 0) break;
      if (performance.now() - settleStarted > SETTLE_MS + SOON_MS) break;
      await new Promise((resolve) => realSetTimeout(resolve, 5));
      scan = handles.scan(SOON_MS);
    }
    const v3 = violationFailure();
    if (v3 !== undefined) fail(v3);
    if (scan.findings.length > 0) failOpen(scan.findings);
    const settleMs = performance.now() - settleStarted;

    const signals = handles.parkSignals();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onRejection);
    v8.startupSnapshot.setDeserializeMainFunction(() => restore(handler));
    v8.startupSnapshot.addSerializeCallback(() => {
      // Whatever Init's callbacks opened after the check above.
      const last = handles.scan(0);
      if (last.findings.length > 0) failOpen(last.findings);
      writeReport({
        ok: true,
        initMs,
        settleMs,
        hooks: hooks.counts(),
        deferred: deferred.touched(),
        pools: entropy.pools(),
        signals,
        handlerIsAsync: handler.constructor?.name === 'AsyncFunction',
      });
    });
  };

  /** @param {Array<{ what: string, stack: string | undefined }>} findings @returns {never} */
  const failOpen = (findings) => {
    const details = findings.map((f) => ({ what: f.what, site: userSite(f.stack) }));
    const list = details.map((d) => (d.site === undefined ? d.what : `${d.what}, opened at ${d.site}`)).join('; ');
    fail({
      ok: false,
      code: 'OpenHandles',
      message: `Init left open: ${list}. SnapStart cannot checkpoint open sockets, servers, timers or child processes: open connections and start timers in the handler or an afterRestore hook, or close them in a beforeCheckpoint hook.`,
      details,
    });
  };

  /** @param {Function} h */
  function restore(h) {
    restored = true;
    entropy.restore();
    const realizeError = deferred.realize();
    handles.restore();
    if (!rt.connect()) return;
    rt.patchConsole(process.env);
    rt.readFunctionInfo(process.env);
    const api = rt.API;
    /** @param {unknown} err */
    const restoreFailed = (err) => {
      rt.logError('Restore Error', err);
      const r = rt.toRapidResponse(err);
      rt.call('POST', `${api}/restore/error`, JSON.stringify(r), r.errorType).then(
        () => process.exit(1),
        () => process.exit(1),
      );
    };
    rt.call('GET', `${api}/restore/next`, undefined, undefined).then((/** @type {{ status: number, body: Buffer }} */ reply) => {
      if (reply.status !== 200) {
        rt.fatal(new Error(`Failed to get restore/next: HTTP ${reply.status} ${reply.body.toString()}`));
        return;
      }
      if (realizeError !== undefined) {
        restoreFailed(realizeError);
        return;
      }
      hooks.runAfter().then(() => rt.serve(h), restoreFailed);
    }, rt.fatal);
  }

  afterHooks().catch((err) => initFailed(err));
}

build();
