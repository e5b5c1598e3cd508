// @ts-check
'use strict';
/**
 * SnapStart runtime hooks for Node functions (docs/snapstart.md). A function registers them during Init:
 *
 *   globalThis.thaw?.snapstart.registerBeforeCheckpoint(async () => { await pool.end(); });
 *   globalThis.thaw?.snapstart.registerAfterRestore(() => { pool = new Pool(); });
 *
 * or, in a snapshot, `require('thaw-snapstart')` / `import { registerAfterRestore } from 'thaw-snapstart'`
 * (the same object). Order, as AWS documents it for Python (snapshot_restore_py) and .NET
 * (Amazon.Lambda.Core.SnapshotRestore), and as CRaC does for Java:
 *
 * - beforeCheckpoint hooks run once, when the snapshot is built, in REVERSE order of registration (the last
 *   resource set up is the first torn down);
 * - afterRestore hooks run in every restored environment, in order of registration, before the first
 *   invocation.
 *
 * A hook may return a promise; the next one starts when it settles. A hook that throws or rejects stops the
 * sequence: before the checkpoint it fails the build, after restore it is reported to the Runtime API
 * (POST /runtime/restore/error) and the environment does not serve.
 *
 * Also accepted, for code ported from other runtimes: registerBeforeSnapshot (= registerBeforeCheckpoint).
 */

/** @typedef {() => unknown} Hook */

function createHooks() {
  /** @type {Hook[]} */
  const before = [];
  /** @type {Hook[]} */
  const after = [];
  /** @type {'init' | 'checkpoint' | 'restored'} */
  let phase = 'init';

  /** @param {unknown} fn @param {string} what @returns {Hook} */
  const check = (fn, what) => {
    if (typeof fn !== 'function') throw new TypeError(`${what}: the hook must be a function, got ${fn === null ? 'null' : typeof fn}`);
    return /** @type {Hook} */ (fn);
  };

  /** @param {unknown} fn */
  function registerBeforeCheckpoint(fn) {
    before.push(check(fn, 'registerBeforeCheckpoint'));
  }
  /** @param {unknown} fn */
  function registerAfterRestore(fn) {
    after.push(check(fn, 'registerAfterRestore'));
  }

  const api = Object.freeze({
    registerBeforeCheckpoint,
    registerAfterRestore,
    registerBeforeSnapshot: registerBeforeCheckpoint,
    /** 'init' while Init runs, 'checkpoint' while beforeCheckpoint hooks run, 'restored' after restore. */
    get phase() {
      return phase;
    },
  });

  return {
    api,
    /** Run beforeCheckpoint hooks, last registered first. Rejects with the first failure. */
    async runBefore() {
      phase = 'checkpoint';
      const list = before.slice().reverse();
      for (const fn of list) await fn();
      return list.length;
    },
    /** Run afterRestore hooks in registration order. Rejects with the first failure. */
    async runAfter() {
      phase = 'restored';
      const list = after.slice();
      for (const fn of list) await fn();
      return list.length;
    },
    counts: () => ({ before: before.length, after: after.length }),
  };
}

module.exports = { createHooks };
