// @ts-check
'use strict';
/**
 * Deferred built-ins: stand-ins for the Node built-ins that a V8 startup snapshot cannot hold (http, https,
 * http2, tls and their internals; the undici-backed globals fetch, Request, Response, Headers, FormData,
 * WebSocket, ...). Loading any of them while `node --build-snapshot` runs leaves native handles that V8
 * cannot serialise, and the build dies in a fatal error. Most functions only *load* them during Init and use
 * them in the handler, so Init gets a stand-in instead, and the real module is loaded after restore:
 *
 * - Plain data exports (http.METHODS, http.STATUS_CODES, http2.constants, tls.DEFAULT_CIPHERS, ...) have
 *   their real values, taken from the same Node binary by snapshot-probe.cjs.
 * - Functions and classes are stand-ins that forward to the real ones once restored. Before the snapshot:
 *   `new` on a function-style constructor (http.Agent, https.Agent, http.Server, ...) makes the object now and
 *   runs the real constructor on it right after restore; `X.prototype` is an object whose prototype becomes the
 *   real X.prototype after restore (so `Object.create(http.ServerResponse.prototype)`, `class A extends
 *   https.Agent` and `util.inherits` work), and members assigned to it move to the real prototype.
 * - Calling a function (http.request, fetch, tls.connect, ...), constructing a class (new Headers()), or
 *   reading an export that is neither data nor a function (https.globalAgent) during Init is recorded as a
 *   violation: the build fails with a message that names it.
 * - Assignments to a module's exports during Init (instrumentation, `https.globalAgent = agent`) are applied
 *   to the real module on restore.
 *
 * After restore every operation forwards to the real module, loaded on first use, except where Init left
 * work to finish (prototypes, deferred constructions, assignments): those modules are loaded at restore.
 */

/**
 * @typedef {{ t: 'data', v: unknown }
 *   | { t: 'fn', cls: boolean, name: string, length: number, statics: Record<string, Desc> }
 *   | { t: 'opaque', type: string }} Desc
 * @typedef {{ node: string, modules: Record<string, { keys: Record<string, Desc> }>, globals: Record<string, Desc> }} Catalogue
 * @typedef {{ what: string, stack: string | undefined }} Violation
 */

const NETWORK_ADVICE = 'open connections in the handler or in an afterRestore hook';

class SnapStartUnsupportedError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.code = 'ERR_THAW_SNAPSTART_UNSUPPORTED';
  }
}
SnapStartUnsupportedError.prototype.name = 'SnapStartUnsupportedError';

/**
 * @param {{ builtinRequire: (id: string) => any, catalogue: Catalogue }} opts
 */
function createDeferred(opts) {
  const { builtinRequire, catalogue } = opts;
  let restored = false;
  /** @type {Violation[]} */
  const violations = [];
  /** @type {Map<string, object>} */
  const moduleProxies = new Map();
  /** @type {Map<string, any>} */
  const globalStubs = new Map();
  /** Work left for restore, in the order Init created it. @type {Array<() => void>} */
  const onRestore = [];
  /** Modules and globals Init touched, for the build report. @type {Set<string>} */
  const touched = new Set();

  /** @param {string} what @param {string} [advice] */
  function violate(what, advice) {
    const stack = new Error().stack;
    violations.push({ what, stack });
    return new SnapStartUnsupportedError(
      `${what} cannot run while the SnapStart snapshot is built (during Init)${advice === undefined ? '' : `: ${advice}`}`,
    );
  }

  /**
   * A stand-in for a function or class. `getReal` loads the real one (after restore only).
   * @param {string} label e.g. 'http.Agent' @param {Extract<Desc, { t: 'fn' }>} desc @param {() => any} getReal
   * @param {() => void} [onUse] called on every use during Init
   * @returns {any}
   */
  function fnStub(label, desc, getReal, onUse = () => {}) {
    const target = function () {};
    Object.defineProperty(target, 'name', { value: desc.name });
    Object.defineProperty(target, 'length', { value: desc.length });
    /** Members Init read or assigned on the function itself. @type {Map<string | symbol, unknown>} */
    const statics = new Map();
    let protoUsed = false;
    /** The stand-in prototype: a plain object now, re-parented to the real prototype on restore. */
    const proto = {};
    Object.defineProperty(proto, 'constructor', { value: undefined, writable: true, configurable: true });
    target.prototype = proto;
    /** @type {any} */
    let proxy;

    const useProto = () => {
      if (protoUsed || desc.cls) return;
      protoUsed = true;
      onRestore.push(() => {
        const real = getReal().prototype;
        // Members Init assigned to the stand-in prototype (monkey-patching) go to the real one.
        for (const key of Reflect.ownKeys(proto)) {
          if (key === 'constructor') continue;
          const d = /** @type {PropertyDescriptor} */ (Object.getOwnPropertyDescriptor(proto, key));
          Object.defineProperty(real, key, d);
          delete (/** @type {any} */ (proto))[key];
        }
        delete (/** @type {any} */ (proto)).constructor;
        Object.setPrototypeOf(proto, real);
      });
    };

    proxy = new Proxy(target, {
      get(t, key, receiver) {
        if (restored) {
          if (key === 'prototype') return protoUsed ? proto : getReal().prototype;
          if (key === Symbol.hasInstance && protoUsed) {
            const real = getReal();
            return (/** @type {any} */ v) => v instanceof real || Object.prototype.isPrototypeOf.call(proto, v);
          }
          return Reflect.get(getReal(), key);
        }
        onUse();
        if (key === 'prototype') {
          if (desc.cls) throw violate(`${label}.prototype`);
          useProto();
          return proto;
        }
        if (key === 'name' || key === 'length') return Reflect.get(t, key, receiver);
        if (statics.has(key)) return statics.get(key);
        if (typeof key === 'string' && Object.hasOwn(desc.statics, key)) {
          const v = fromDesc(`${label}.${key}`, /** @type {Desc} */ (desc.statics[key]), () => getReal()[key]);
          statics.set(key, v);
          return v;
        }
        if (key === Symbol.hasInstance || key === 'call' || key === 'apply' || key === 'bind' || key === 'toString') {
          return Reflect.get(t, key, receiver);
        }
        return undefined;
      },
      set(_t, key, value) {
        if (restored) return Reflect.set(getReal(), key, value);
        onUse();
        const first = !statics.has(key);
        statics.set(key, value);
        if (first) {
          onRestore.push(() => {
            getReal()[key] = statics.get(key);
          });
        }
        return true;
      },
      has(t, key) {
        if (restored) return key === 'prototype' || Reflect.has(getReal(), key);
        return Reflect.has(t, key) || statics.has(key) || (typeof key === 'string' && Object.hasOwn(desc.statics, key));
      },
      apply(_t, thisArg, args) {
        if (restored) return Reflect.apply(getReal(), thisArg, args);
        onUse();
        // `Agent.call(this, options)` inside a util.inherits-style subclass under construction: defer it too.
        if (!desc.cls && thisArg !== null && typeof thisArg === 'object' && Object.prototype.isPrototypeOf.call(proto, thisArg)) {
          onRestore.push(() => {
            Reflect.apply(getReal(), thisArg, args);
          });
          return undefined;
        }
        throw violate(`${label}()`, NETWORK_ADVICE);
      },
      construct(_t, args, newTarget) {
        if (restored) {
          const real = getReal();
          return Reflect.construct(real, args, newTarget === proxy ? real : newTarget);
        }
        onUse();
        if (desc.cls) throw violate(`new ${label}()`, 'create it in the handler or in an afterRestore hook');
        // A function-style constructor: make the object now, run the real constructor on it after restore.
        useProto();
        const obj = Object.create(newTarget === proxy ? proto : newTarget.prototype);
        onRestore.push(() => {
          Reflect.apply(getReal(), obj, args);
        });
        return obj;
      },
    });
    return proxy;
  }

  /**
   * The value Init sees for one export.
   * @param {string} label @param {Desc} desc @param {() => any} getReal
   */
  function fromDesc(label, desc, getReal) {
    if (desc.t === 'data') return structuredClone(desc.v);
    if (desc.t === 'fn') return fnStub(label, desc, getReal);
    violations.push({ what: `${label} (${desc.type})`, stack: new Error().stack });
    return undefined;
  }

  /** @param {string} name */
  function isDeferred(name) {
    return Object.hasOwn(catalogue.modules, name) || DEFERRED_WITHOUT_CATALOGUE.has(name);
  }

  /**
   * The stand-in for `require(name)` of a deferred built-in (name without 'node:').
   * @param {string} name @param {string} id the specifier as required
   */
  function moduleStub(name, id) {
    const known = moduleProxies.get(name);
    if (known !== undefined) return known;
    const keys = catalogue.modules[name]?.keys ?? {};
    /** @type {any} */
    let real;
    const getReal = () => {
      if (!restored) throw violate(`require('${id}')`);
      real ??= builtinRequire(id);
      return real;
    };
    /** Values Init has seen or assigned, by key. @type {Map<string | symbol, unknown>} */
    const seen = new Map();
    /** Keys Init assigned. @type {Set<string | symbol>} */
    const assigned = new Set();
    /** @type {Set<string | symbol>} */
    const deleted = new Set();
    touched.add(name);
    onRestore.push(() => {
      if (assigned.size === 0 && deleted.size === 0) return;
      const r = getReal();
      for (const key of deleted) delete r[key];
      for (const key of assigned) r[key] = seen.get(key);
    });

    /** @param {string | symbol} key */
    const initGet = (key) => {
      if (seen.has(key)) return seen.get(key);
      if (deleted.has(key) || typeof key !== 'string' || !Object.hasOwn(keys, key)) return undefined;
      const v = fromDesc(`${name}.${key}`, /** @type {Desc} */ (keys[key]), () => getReal()[key]);
      seen.set(key, v);
      return v;
    };
    /** @param {string | symbol} key */
    const initHas = (key) => seen.has(key) || (!deleted.has(key) && typeof key === 'string' && Object.hasOwn(keys, key));

    const proxy = new Proxy(/** @type {Record<string | symbol, unknown>} */ ({}), {
      get(_t, key) {
        return restored ? getReal()[key] : initGet(key);
      },
      set(_t, key, value) {
        if (restored) return Reflect.set(getReal(), key, value);
        seen.set(key, value);
        assigned.add(key);
        deleted.delete(key);
        return true;
      },
      has(_t, key) {
        return restored ? key in getReal() : initHas(key);
      },
      deleteProperty(_t, key) {
        if (restored) return Reflect.deleteProperty(getReal(), key);
        seen.delete(key);
        assigned.delete(key);
        deleted.add(key);
        return true;
      },
      defineProperty(_t, key, d) {
        if (restored) return Reflect.defineProperty(getReal(), key, d);
        seen.set(key, d.value ?? d.get?.());
        assigned.add(key);
        return true;
      },
      ownKeys() {
        if (restored) return Reflect.ownKeys(getReal());
        const out = new Set([...Object.keys(keys).filter((k) => !deleted.has(k)), ...seen.keys()]);
        return [...out];
      },
      getOwnPropertyDescriptor(_t, key) {
        if (restored) {
          const d = Reflect.getOwnPropertyDescriptor(getReal(), key);
          return d === undefined ? undefined : { ...d, configurable: true };
        }
        if (!initHas(key)) return undefined;
        // Report a getter, not the value: describing the module (esbuild's __toESM copies descriptors) must not
        // count as using each export.
        return { get: () => proxy[key], set: (/** @type {unknown} */ v) => { proxy[key] = v; }, enumerable: true, configurable: true };
      },
      getPrototypeOf() {
        return Object.prototype;
      },
    });
    moduleProxies.set(name, proxy);
    return proxy;
  }

  /**
   * The stand-in for an undici-backed global (the bundle sees it instead of the real binding).
   * @param {string} name
   */
  function globalStub(name) {
    const known = globalStubs.get(name);
    if (known !== undefined) return known;
    const desc = catalogue.globals[name];
    /** @type {any} */
    let stub;
    if (desc === undefined) stub = undefined;
    else if (desc.t === 'fn') stub = fnStub(name, desc, () => /** @type {any} */ (globalThis)[name], () => touched.add(name));
    else stub = fromDesc(name, desc, () => /** @type {any} */ (globalThis)[name]);
    globalStubs.set(name, stub);
    return stub;
  }

  /**
   * On restore: forward everything from now on, and finish what Init left (load the modules, run the deferred
   * constructors, move prototypes). Returns the first error, if a piece of that work threw.
   * @returns {unknown}
   */
  function realize() {
    restored = true;
    let first;
    for (const fn of onRestore.splice(0)) {
      try {
        fn();
      } catch (err) {
        first ??= err;
      }
    }
    return first;
  }

  return {
    isDeferred,
    module: moduleStub,
    global: globalStub,
    realize,
    violations,
    /** Names of the deferred modules and globals Init touched. */
    touched: () => [...touched],
    globalNames: () => Object.keys(catalogue.globals),
  };
}

/** Deferred even if the probe could not describe them (every access during Init is then a violation). */
const DEFERRED_WITHOUT_CATALOGUE = new Set([
  'http', 'https', 'http2', 'tls', 'repl', 'sqlite',
  '_http_agent', '_http_client', '_http_common', '_http_incoming', '_http_outgoing', '_http_server',
  '_stream_wrap', '_tls_common', '_tls_wrap',
]);

module.exports = { createDeferred, SnapStartUnsupportedError };
