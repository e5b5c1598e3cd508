// @ts-check
'use strict';
/**
 * Thaw's post-init code cache for CommonJS handlers (runs inside the sandbox).
 *
 * Node compiles functions lazily: a code cache taken when a module is first compiled holds little more than its
 * top level. Thaw compiles the function's own CommonJS files (under the task root and /opt) through vm.Script.
 * In the one environment the host asks to produce the cache (a fresh sandbox that runs the version's Init and
 * no invocation), each script's code cache is serialised after Init, so it holds every function compiled
 * during Init, and uploaded once. The host checks it against the version's files, keeps it for that version
 * alone and hands it to later cold starts, which skip parsing and compiling those functions. V8 checks each
 * entry against the source's length and its own version and flags, and ignores an entry that does not match.
 *
 * Wire format (GET/POST /2018-06-01/runtime/thaw/code-cache): repeated [u32 name length][name][u32 data length][data].
 */
const http = require('node:http');
const Module = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

/** @type {Map<string, Buffer>} */
const entries = new Map();
/** @type {Array<[string, vm.Script]>} */
const scripts = [];
let produce = false;
let rejected = 0;

/** @param {Buffer} buf */
function decode(buf) {
  let o = 0;
  while (o + 8 <= buf.length) {
    const n = buf.readUInt32LE(o);
    const name = buf.toString('utf8', o + 4, o + 4 + n);
    o += 4 + n;
    const d = buf.readUInt32LE(o);
    entries.set(name, buf.subarray(o + 4, o + 4 + d));
    o += 4 + d;
  }
}

function encode() {
  /** @type {Buffer[]} */
  const parts = [];
  for (const [name, script] of scripts) {
    const data = script.createCachedData();
    const n = Buffer.from(name);
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32LE(n.length);
    const dl = Buffer.allocUnsafe(4);
    dl.writeUInt32LE(data.length);
    parts.push(head, n, dl, data);
  }
  return Buffer.concat(parts);
}

/**
 * Compile the function's CommonJS files through vm.Script with their cached data.
 * @param {string[]} roots
 */
function installHook(roots) {
  const proto = /** @type {any} */ (Module.prototype);
  const original = proto._compile;
  proto._compile = function compile(/** @type {string} */ content, /** @type {string} */ filename, /** @type {unknown[]} */ ...rest) {
    // Node 22+ passes a format ('module' for ES modules loaded by require): only plain CommonJS is ours.
    const format = rest[0];
    if ((format !== undefined && format !== 'commonjs') || !roots.some((r) => filename.startsWith(r))) {
      return original.call(this, content, filename, ...rest);
    }
    const mod = this;
    const cachedData = entries.get(filename);
    let script;
    try {
      script = new vm.Script(Module.wrap(content), {
        filename,
        ...(cachedData === undefined ? {} : { cachedData }),
        importModuleDynamically: /** @type {any} */ (vm.constants).USE_MAIN_CONTEXT_DEFAULT_LOADER,
      });
    } catch {
      // Not a CommonJS script after all (e.g. ES module syntax Node detects by itself): Node's own path decides.
      return original.call(this, content, filename, ...rest);
    }
    if (script.cachedDataRejected === true) rejected++;
    if (produce) scripts.push([filename, script]);
    const fn = script.runInThisContext({ displayErrors: true });
    /** @type {any} */
    const req = (/** @type {string} */ id) => mod.require(id);
    req.resolve = (/** @type {string} */ request, /** @type {any} */ options) => /** @type {any} */ (Module)._resolveFilename(request, mod, false, options);
    req.resolve.paths = (/** @type {string} */ request) => /** @type {any} */ (Module)._resolveLookupPaths(request, mod);
    req.main = require.main;
    req.extensions = /** @type {any} */ (Module)._extensions;
    req.cache = /** @type {any} */ (Module)._cache;
    return fn.call(mod.exports, mod.exports, req, mod, filename, path.dirname(filename));
  };
}

/**
 * Ask the host for this version's code cache and install the compile hook when there is one to use or to make.
 * @param {(method: string, urlPath: string) => Promise<{ status: number, headers: Record<string, string>, body: Buffer }>} get
 * @param {string} taskRoot
 */
async function setup(get, taskRoot) {
  let reply;
  try {
    reply = await get('GET', '/2018-06-01/runtime/thaw/code-cache');
  } catch {
    return;
  }
  if (reply.status !== 200 && reply.status !== 204) return;
  use(reply.status === 200 ? reply.body : Buffer.alloc(0), reply.headers['thaw-code-cache'] === 'produce', taskRoot);
}

/**
 * Start with this cache (possibly empty) and install the compile hook when there is one to use or to make.
 * @param {Buffer} data @param {boolean} make @param {string} taskRoot
 */
function use(data, make, taskRoot) {
  produce = make;
  if (data.length > 0) decode(data);
  if (produce || entries.size > 0) installHook([taskRoot.endsWith('/') ? taskRoot : `${taskRoot}/`, '/opt/']);
}

/**
 * After Init, in the environment the host asked to produce the cache (a fresh sandbox that runs Init and
 * nothing else): serialise and upload, once, before asking for an invocation. Resolves when the host has
 * answered; an upload that fails is simply not kept.
 * @param {http.RequestOptions} target
 * @returns {Promise<void>}
 */
function afterInit(target) {
  if (!produce) return Promise.resolve();
  produce = false;
  let body;
  try {
    body = encode();
  } catch {
    return Promise.resolve();
  }
  scripts.length = 0;
  return new Promise((resolve) => {
    const req = http.request({ ...target, agent: false, method: 'POST', path: '/2018-06-01/runtime/thaw/code-cache', headers: { 'Content-Length': body.length } }, (res) => {
      res.resume();
      res.once('end', () => resolve());
      res.once('error', () => resolve());
    });
    req.on('error', () => resolve());
    req.end(body);
  });
}

module.exports = { setup, use, afterInit, stats: () => ({ entries: entries.size, rejected }) };
