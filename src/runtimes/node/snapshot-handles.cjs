// @ts-check
'use strict';
/**
 * What Init leaves open. A V8 startup snapshot holds the JavaScript heap only: an open socket, server, timer,
 * child process, watcher or worker has native state that V8 cannot serialise (a socket makes the build die in
 * a fatal "global handle not serialized"; an unref'd timer silently never fires after restore). So before the
 * checkpoint the snapshot entry asks `openHandles()` and fails the build, naming each one and where it was
 * created, instead of producing a snapshot that crashes or misbehaves.
 *
 * Signal listeners (process.on('SIGTERM', ...)) are the one kind of handle the platform can carry over: they
 * are taken off before the checkpoint and put back after restore.
 *
 * To say where a timer, socket or server was created, setTimeout/setInterval, net.Socket#connect and
 * net.Server#listen are wrapped during Init (they record a stack); after restore the wrappers only forward
 * and the originals are put back where they came from.
 */

/**
 * @typedef {{ kind: string, what: string, stack: string | undefined }} Finding
 */

/**
 * @param {{ net: any, timers: any, os: any }} mods
 */
function installTracking(mods) {
  const { net, os } = mods;
  let restored = false;
  /** Timers created during Init, until they are done. @type {Set<{ timer: any, what: string, stack: string | undefined }>} */
  const timers = new Set();
  /** Sockets and servers created during Init (unref'd ones are invisible to process._getActiveHandles). @type {Map<any, { kind: string, what: string, stack: string | undefined }>} */
  const endpoints = new Map();
  /** Originals to put back on restore: [object, key, value]. @type {Array<[any, string, unknown]>} */
  const originals = [];

  /** @param {any} obj @param {string} key @param {(orig: Function) => Function} make */
  const wrap = (obj, key, make) => {
    const orig = obj[key];
    if (typeof orig !== 'function') return;
    const w = make(orig);
    Object.defineProperty(w, 'name', { value: orig.name });
    Object.defineProperty(w, 'length', { value: orig.length });
    for (const sym of Object.getOwnPropertySymbols(orig)) {
      Object.defineProperty(w, sym, /** @type {PropertyDescriptor} */ (Object.getOwnPropertyDescriptor(orig, sym)));
    }
    originals.push([obj, key, orig]);
    obj[key] = w;
  };

  /** @param {string} kind */
  const timerWrapper = (kind) => (/** @type {Function} */ orig) =>
    /** @this {unknown} */
    function (/** @type {unknown} */ _cb, /** @type {unknown} */ ms) {
      const t = Reflect.apply(orig, this, arguments);
      if (!restored && t !== null && typeof t === 'object') {
        const delay = typeof ms === 'number' && ms > 0 ? ms : 1;
        timers.add({ timer: t, what: `a timer (${kind}, ${delay} ms)`, stack: new Error().stack });
      }
      return t;
    };
  for (const target of [globalThis, mods.timers]) {
    wrap(target, 'setTimeout', timerWrapper('setTimeout'));
    wrap(target, 'setInterval', timerWrapper('setInterval'));
  }

  wrap(net.Socket.prototype, 'connect', (orig) =>
    /** @this {any} */
    function (/** @type {any[]} */ ...args) {
      if (!restored) endpoints.set(this, { kind: 'socket', what: `a connection to ${describeTarget(args)} (net.Socket)`, stack: new Error().stack });
      return Reflect.apply(orig, this, args);
    },
  );
  wrap(net.Server.prototype, 'listen', (orig) =>
    /** @this {any} */
    function (/** @type {any[]} */ ...args) {
      if (!restored) endpoints.set(this, { kind: 'server', what: `a server listening on ${describeTarget(args)} (net.Server)`, stack: new Error().stack });
      return Reflect.apply(orig, this, args);
    },
  );

  /** Signal listeners parked over the checkpoint. @type {Array<[string, Function[]]>} */
  let parked = [];

  return {
    /**
     * Everything Init left open, with the timers still due soon counted separately (they are work in progress,
     * worth waiting for) and the requests in flight (fs, dns) that will finish by themselves.
     * @param {number} soonMs
     */
    scan(soonMs) {
      /** @type {Finding[]} */
      const findings = [];
      for (const [h, site] of endpoints) {
        const open = site.kind === 'server' ? h.listening === true : h.destroyed !== true;
        if (!open) {
          endpoints.delete(h);
          continue;
        }
        findings.push(describeHandle(h, site));
      }
      for (const h of /** @type {any} */ (process)._getActiveHandles()) {
        if (h?._isStdio === true || (typeof h?.fd === 'number' && h.fd <= 2) || endpoints.has(h)) continue;
        findings.push(describeHandle(h, undefined));
      }
      // Timers are not in _getActiveHandles: count them, and use the recorded ones for the details.
      const resources = process.getActiveResourcesInfo();
      const timerCount = resources.filter((r) => r === 'Timeout').length;
      let pendingSoon = 0;
      let known = 0;
      for (const t of timers) {
        if (t.timer._destroyed === true) {
          timers.delete(t);
          continue;
        }
        known += 1;
        const due = t.timer._idleStart + t.timer._idleTimeout - performance.now();
        if (t.timer._repeat == null && t.timer.hasRef?.() !== false && due <= soonMs) pendingSoon += 1;
        else findings.push({ kind: 'timer', what: t.what, stack: t.stack });
      }
      for (let i = known; i < timerCount; i++) findings.push({ kind: 'timer', what: 'a timer (timers/promises or an internal timer)', stack: undefined });
      const requests = resources.filter((r) => r !== 'Timeout' && r !== 'Immediate' && /Req|Request|Promise/.test(r)).length;
      const immediates = resources.filter((r) => r === 'Immediate').length;
      return { findings, pendingSoon, requests, immediates };
    },
    /** Take signal listeners off (their native handles cannot be in the snapshot). */
    parkSignals() {
      parked = [];
      for (const sig of Object.keys(os.constants.signals)) {
        if (process.listenerCount(sig) === 0) continue;
        parked.push([sig, process.rawListeners(sig)]);
        process.removeAllListeners(sig);
      }
      return parked.length;
    },
    /** On restore: forward only, put the originals back, and the signal listeners. */
    restore() {
      restored = true;
      timers.clear();
      endpoints.clear();
      for (const [obj, key, orig] of originals.splice(0)) obj[key] = orig;
      for (const [sig, listeners] of parked) for (const l of listeners) process.on(/** @type {any} */ (sig), /** @type {any} */ (l));
      parked = [];
    },
  };
}

/** @param {any[]} args */
function describeTarget(args) {
  let a = args[0];
  if (Array.isArray(a)) a = a[0];
  if (a !== null && typeof a === 'object') {
    if (typeof a.path === 'string') return a.path;
    if (a.port !== undefined) return `${a.host ?? 'localhost'}:${a.port}`;
    return 'an address';
  }
  if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) {
    const host = typeof args[1] === 'string' ? args[1] : 'localhost';
    return `${host}:${a}`;
  }
  if (typeof a === 'string') return a;
  return 'an address';
}

/** @param {any} h @param {{ kind: string, what: string, stack: string | undefined } | undefined} site @returns {Finding} */
function describeHandle(h, site) {
  const name = h?.constructor?.name ?? 'handle';
  if (name === 'Socket' && typeof h.remoteAddress === 'string') {
    return { kind: 'socket', what: `a TCP connection to ${h.remoteAddress}:${h.remotePort} (net.Socket)`, stack: site?.stack };
  }
  if (site !== undefined) return { kind: site.kind, what: site.what, stack: site.stack };
  if (name === 'Server') {
    let where = 'an address';
    try {
      const a = h.address();
      where = typeof a === 'string' ? a : a === null ? where : `${a.address}:${a.port}`;
    } catch {
      // Not listening any more.
    }
    return { kind: 'server', what: `a server listening on ${where} (net.Server)`, stack: undefined };
  }
  if (name === 'ChildProcess') return { kind: 'process', what: `a child process (${h.spawnfile ?? 'unknown'}, pid ${h.pid})`, stack: undefined };
  if (name === 'Socket') return { kind: 'socket', what: 'a socket (net.Socket)', stack: undefined };
  if (name === 'FSWatcher' || name === 'StatWatcher') return { kind: 'watcher', what: `a file watcher (fs.${name === 'FSWatcher' ? 'watch' : 'watchFile'})`, stack: undefined };
  if (name === 'Worker' || name === 'MessagePort') return { kind: 'worker', what: `a worker thread or message port (${name})`, stack: undefined };
  return { kind: 'handle', what: `an open ${name}`, stack: undefined };
}

module.exports = { installTracking };
