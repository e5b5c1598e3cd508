// @ts-check
'use strict';
/**
 * Describes, for one Node binary, the built-ins that a V8 startup snapshot cannot hold, so that
 * snapshot-deferred.cjs can stand in for them while a snapshot is built:
 *
 *   node snapshot-probe.cjs OUT_FILE
 *
 * Runs as a plain script (not in a snapshot). Writes v8.serialize({ node, modules, globals }) to OUT_FILE:
 * for every export, either its value (plain data such as http.METHODS or http2.constants, which Init code
 * reads), or the shape of a function (name, length, class or not, static members), or 'opaque'.
 */

const fs = require('node:fs');
const v8 = require('node:v8');

/** Built-ins that crash `node --build-snapshot` when loaded (checked against Node 22 and 24). */
const MODULES = [
  'http', 'https', 'http2', 'tls', 'repl', 'node:sqlite',
  '_http_agent', '_http_client', '_http_common', '_http_incoming', '_http_outgoing', '_http_server',
  '_stream_wrap', '_tls_common', '_tls_wrap',
];
/** Globals backed by undici, which cannot be loaded while a snapshot is built. */
const GLOBALS = ['fetch', 'Request', 'Response', 'Headers', 'FormData', 'WebSocket', 'CloseEvent', 'MessageEvent', 'EventSource'];

const MAX_DATA_BYTES = 512 * 1024;

/**
 * @typedef {{ t: 'data', v: unknown }
 *   | { t: 'fn', cls: boolean, name: string, length: number, statics: Record<string, Desc> }
 *   | { t: 'opaque', type: string }} Desc
 */

/** @param {unknown} v @param {number} depth @returns {boolean} */
function isPlainData(v, depth) {
  if (v === null) return true;
  const type = typeof v;
  if (type === 'string' || type === 'number' || type === 'boolean' || type === 'undefined' || type === 'bigint') return true;
  if (type !== 'object' || depth > 8) return false;
  const proto = Object.getPrototypeOf(v);
  if (Array.isArray(v)) return proto === Array.prototype && v.every((x) => isPlainData(x, depth + 1));
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key of Reflect.ownKeys(/** @type {object} */ (v))) {
    if (typeof key === 'symbol') return false;
    const d = Object.getOwnPropertyDescriptor(v, key);
    if (d === undefined || d.get !== undefined || d.set !== undefined || !isPlainData(d.value, depth + 1)) return false;
  }
  return true;
}

/** @param {Function} f */
function isClass(f) {
  try {
    return /^class\b/.test(Function.prototype.toString.call(f));
  } catch {
    return false;
  }
}

/** @param {unknown} v @param {number} depth @returns {Desc} */
function describe(v, depth) {
  if (typeof v === 'function') {
    /** @type {Record<string, Desc>} */
    const statics = {};
    if (depth < 2) {
      for (const key of Object.getOwnPropertyNames(v)) {
        if (key === 'length' || key === 'name' || key === 'prototype' || key === 'arguments' || key === 'caller') continue;
        const d = Object.getOwnPropertyDescriptor(v, key);
        if (d !== undefined && d.get === undefined) statics[key] = describe(d.value, depth + 1);
      }
    }
    return { t: 'fn', cls: isClass(v), name: v.name, length: v.length, statics };
  }
  if (isPlainData(v, 0)) {
    try {
      if (v8.serialize(v).length <= MAX_DATA_BYTES) return { t: 'data', v };
    } catch {
      // Not serialisable after all: opaque.
    }
  }
  return { t: 'opaque', type: typeof v === 'object' ? (v === null ? 'null' : (v.constructor?.name ?? 'object')) : typeof v };
}

/** @param {object} ns @returns {Record<string, Desc>} */
function describeNamespace(ns) {
  /** @type {Record<string, Desc>} */
  const keys = {};
  for (const key of Object.getOwnPropertyNames(ns)) {
    let value;
    try {
      value = /** @type {any} */ (ns)[key];
    } catch {
      keys[key] = { t: 'opaque', type: 'throws' };
      continue;
    }
    keys[key] = describe(value, 0);
  }
  return keys;
}

function main() {
  process.noDeprecation = true; // _stream_wrap and friends are deprecated; describing them is not using them.
  const out = process.argv[2];
  if (out === undefined) throw new Error('usage: node snapshot-probe.cjs OUT_FILE');
  /** @type {Record<string, { keys: Record<string, Desc> }>} */
  const modules = {};
  for (const name of MODULES) {
    let mod;
    try {
      mod = require(name);
    } catch {
      continue;
    }
    modules[name.startsWith('node:') ? name.slice(5) : name] = { keys: describeNamespace(mod) };
  }
  /** @type {Record<string, Desc>} */
  const globals = {};
  for (const name of GLOBALS) {
    if (name in globalThis) globals[name] = describe(/** @type {any} */ (globalThis)[name], 0);
  }
  fs.writeFileSync(out, v8.serialize({ node: process.version, modules, globals }));
}

main();
