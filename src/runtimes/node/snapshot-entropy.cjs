// @ts-check
'use strict';
/**
 * Uniqueness across restores. Every process restored from one snapshot starts from the same heap, so any
 * entropy that sits in the heap at checkpoint time would be shared by all of them. Measured on Node 22 and 24:
 *
 * - Math.random: V8 reseeds it when a context is deserialised (each restore draws fresh values). Nothing to do
 *   (unless someone passes --random-seed, which the builder never does).
 * - crypto.randomBytes / randomFill(Sync) / getRandomValues: drawn from OpenSSL's DRBG, which lives outside
 *   the V8 heap and is seeded per process. Fresh after restore.
 * - crypto.randomUUID (and randomUUIDv7, webcrypto's crypto.randomUUID): Node keeps a batch of 128 UUIDs' worth
 *   of random bytes in the heap; without help every restored process hands out the SAME next UUIDs. During Init
 *   the functions below draw UUIDs without that cache, so it is still empty at the checkpoint and each restored
 *   process fills its own.
 * - crypto.randomInt: the same story with a 6 KiB cache; during Init it is served from fresh random bytes.
 * - Entropy pools in user land (uuid's rnds8Pool, nanoid's pool, ...) are filled through randomFillSync or
 *   getRandomValues: every buffer filled that way during Init is refilled with fresh bytes on restore, as if
 *   each environment had run Init itself. Values already derived from them (strings, keys) cannot be.
 *
 * Installed before any function code runs, so that references captured during Init are the wrappers; after
 * restore the wrappers only forward.
 */

const kRandMax = 2 ** 48 - 1;
const UNCACHED = Object.freeze({ disableEntropyCache: true });

/**
 * @param {any} crypto the node:crypto module
 * @param {any} webcrypto globalThis.crypto (a Crypto instance)
 */
function installEntropy(crypto, webcrypto) {
  let restored = false;
  /** Buffers filled during Init: [weak reference, offset, size]. @type {Array<[WeakRef<any>, number, number]>} */
  const filled = [];

  const origUUID = crypto.randomUUID;
  const origUUIDv7 = crypto.randomUUIDv7;
  const origRandomInt = crypto.randomInt;
  const origFillSync = crypto.randomFillSync;
  const origFill = crypto.randomFill;

  /** Options with the entropy cache disabled, unless they are invalid (then Node's own validation throws). @param {unknown} options */
  const uncached = (options) => {
    if (options === undefined) return UNCACHED;
    if (typeof options !== 'object' || options === null) return options;
    const d = /** @type {any} */ (options).disableEntropyCache;
    if (d !== undefined && typeof d !== 'boolean') return options;
    return { ...options, disableEntropyCache: true };
  };

  /** @param {Function} wrapper @param {Function} orig */
  const like = (wrapper, orig) => {
    Object.defineProperty(wrapper, 'name', { value: orig.name });
    Object.defineProperty(wrapper, 'length', { value: orig.length });
    return wrapper;
  };

  /** @param {unknown} buf @param {unknown} offset @param {unknown} size */
  const remember = (buf, offset, size) => {
    if (restored || buf === null || typeof buf !== 'object') return;
    const last = filled[filled.length - 1];
    if (last !== undefined && last[0].deref() === buf) return;
    const view = /** @type {any} */ (buf);
    const bytes = ArrayBuffer.isView(view) ? view.byteLength : view instanceof ArrayBuffer ? view.byteLength : -1;
    if (bytes <= 0) return;
    // randomFillSync(buf, offset, size) counts in elements of 1 byte for Buffers/Uint8Arrays and in bytes of the
    // underlying view otherwise; refilling the whole requested range by the same call keeps that meaning.
    const o = typeof offset === 'number' ? offset : 0;
    const s = typeof size === 'number' ? size : -1;
    filled.push([new WeakRef(view), o, s]);
  };

  if (typeof origUUID === 'function') {
    crypto.randomUUID = like(function randomUUID(/** @type {unknown} */ options) {
      return restored ? origUUID(options) : origUUID(uncached(options));
    }, origUUID);
  }
  if (typeof origUUIDv7 === 'function') {
    crypto.randomUUIDv7 = like(function randomUUIDv7(/** @type {unknown} */ options) {
      return restored ? origUUIDv7(options) : origUUIDv7(uncached(options));
    }, origUUIDv7);
  }

  if (typeof origRandomInt === 'function') {
    crypto.randomInt = like(function randomInt(/** @type {any} */ min, /** @type {any} */ max, /** @type {any} */ callback) {
      if (restored) return Reflect.apply(origRandomInt, crypto, arguments);
      // Argument handling as in Node's lib/internal/crypto/random.js; anything invalid goes to Node to throw.
      let lo = min;
      let hi = max;
      let cb = callback;
      if (typeof hi === 'undefined' || typeof hi === 'function') {
        cb = hi;
        hi = lo;
        lo = 0;
      }
      const isSync = typeof cb === 'undefined';
      if ((!isSync && typeof cb !== 'function') || !Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || !(hi > lo) || hi - lo > kRandMax) {
        return Reflect.apply(origRandomInt, crypto, arguments);
      }
      const range = hi - lo;
      const randLimit = 2 ** 48 - (2 ** 48 % range);
      const six = Buffer.alloc(6);
      for (;;) {
        origFillSync(six);
        const x = six.readUIntBE(0, 6);
        if (x < randLimit) {
          const n = (x % range) + lo;
          if (isSync) return n;
          process.nextTick(cb, undefined, n);
          return undefined;
        }
      }
    }, origRandomInt);
  }

  if (typeof origFillSync === 'function') {
    crypto.randomFillSync = like(function randomFillSync(/** @type {unknown} */ buf, /** @type {unknown} */ offset, /** @type {unknown} */ size) {
      const r = Reflect.apply(origFillSync, crypto, arguments);
      remember(buf, offset, size);
      return r;
    }, origFillSync);
  }
  if (typeof origFill === 'function') {
    crypto.randomFill = like(function randomFill(/** @type {unknown} */ buf, /** @type {unknown} */ offset, /** @type {unknown} */ size) {
      const r = Reflect.apply(origFill, crypto, arguments);
      remember(buf, typeof offset === 'function' ? undefined : offset, typeof size === 'function' ? undefined : size);
      return r;
    }, origFill);
  }
  // Web Crypto: globalThis.crypto.randomUUID / getRandomValues live on Crypto.prototype (node:crypto's
  // getRandomValues is a getter that forwards there).
  const proto = webcrypto === undefined ? undefined : Object.getPrototypeOf(webcrypto);
  const webUUID = proto?.randomUUID;
  const webGetRandomValues = proto?.getRandomValues;
  if (typeof webUUID === 'function') {
    Object.defineProperty(proto, 'randomUUID', {
      ...Object.getOwnPropertyDescriptor(proto, 'randomUUID'),
      value: like(/** @this {unknown} */ function randomUUID() {
        if (restored || this !== webcrypto) return Reflect.apply(webUUID, this, arguments);
        return origUUID(UNCACHED);
      }, webUUID),
    });
  }
  if (typeof webGetRandomValues === 'function') {
    Object.defineProperty(proto, 'getRandomValues', {
      ...Object.getOwnPropertyDescriptor(proto, 'getRandomValues'),
      value: like(/** @this {unknown} */ function getRandomValues(/** @type {unknown} */ data) {
        const r = Reflect.apply(webGetRandomValues, this, arguments);
        remember(data, undefined, undefined);
        return r;
      }, webGetRandomValues),
    });
  }

  return {
    /** On restore, before anything else runs: forward from now on, and refill the pools Init filled. */
    restore() {
      restored = true;
      let refilled = 0;
      for (const [ref, offset, size] of filled.splice(0)) {
        const buf = ref.deref();
        if (buf === undefined) continue;
        try {
          if (size >= 0) origFillSync(buf, offset, size);
          else origFillSync(buf, offset);
          refilled += 1;
        } catch {
          // The buffer was detached or shrunk since: nothing left to refresh.
        }
      }
      return refilled;
    },
    /** Buffers that would be refilled on restore (for the build report). */
    pools: () => filled.filter(([ref]) => ref.deref() !== undefined).length,
  };
}

module.exports = { installEntropy };
