// @ts-check
'use strict';
/**
 * Thaw's Node.js runtime: runs INSIDE an execution environment and talks to the host only through the
 * Lambda Runtime API (2018-06-01).
 *
 *   node /var/runtime/node/bootstrap.cjs [--runtime-api-socket PATH]
 *
 * With --runtime-api-socket it speaks HTTP over that Unix socket, else over TCP to AWS_LAMBDA_RUNTIME_API
 * (host:port). One keep-alive connection for the whole life of the process (a second one only if two requests
 * overlap), with a small HTTP/1.1 client of its own (see RapiConnection).
 *
 * Behaviour follows AWS's Node.js runtime interface client (github.com/aws/aws-lambda-nodejs-runtime-interface-client,
 * src/): handler resolution (UserFunction.js), callback/context.done semantics (CallbackContext.js, Runtime.js),
 * error shapes (Errors.js) and the console log format (LogPatch.js). Differences are noted where they occur.
 *
 * Pure JavaScript, no dependencies, and nothing but function definitions at the top level: everything that
 * reads the environment, opens sockets or patches globals happens in main(), so that this file can be put in
 * a V8 startup snapshot and main() run after deserialisation.
 */

const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const { pathToFileURL } = require('node:url');
const codeCache = require('./code-cache.cjs');

const API = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const REQUEST_ID_SYMBOL = Symbol.for('aws.lambda.runtime.requestId');

/** @param {string} name */
function runtimeErrorClass(name) {
  const C = class extends Error {};
  C.prototype.name = `Runtime.${name}`;
  return C;
}
const ImportModuleError = runtimeErrorClass('ImportModuleError');
const HandlerNotFound = runtimeErrorClass('HandlerNotFound');
const MalformedHandlerName = runtimeErrorClass('MalformedHandlerName');
const UserCodeSyntaxError = runtimeErrorClass('UserCodeSyntaxError');
class UnhandledPromiseRejection extends Error {
  /** @param {unknown} reason */
  constructor(reason) {
    super(safeString(reason));
    this.reason = reason;
  }
}
UnhandledPromiseRejection.prototype.name = 'Runtime.UnhandledPromiseRejection';
class NodeJsExit extends Error {
  constructor() {
    super(
      'The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly caused by a Promise that was never settled. For more information, see https://nodejs.org/docs/latest/api/process.html#exit-codes',
    );
  }
}
NodeJsExit.prototype.name = 'Runtime.NodeJsExit';

/** @param {unknown} v */
function safeString(v) {
  try {
    return String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Errors, shaped as the Node RIC posts and logs them (Errors.js)

/** @param {string} s */
function esc(s) {
  return s.replaceAll('\x7F', '%7F');
}

/**
 * @param {unknown} error
 * @returns {{ errorType: string, errorMessage: string, trace?: string[] }}
 */
function toRapidResponse(error) {
  try {
    const e = /** @type {any} */ (error);
    if (util.types.isNativeError(error) || (e && typeof e.name === 'string' && typeof e.message === 'string' && typeof e.stack === 'string')) {
      return {
        errorType: esc(e.name),
        errorMessage: esc(e.message),
        trace: typeof e.stack === 'string' ? esc(e.stack).split('\n') : [],
      };
    }
    return { errorType: typeof error, errorMessage: safeString(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

/** @param {unknown} err */
function intoError(err) {
  return err instanceof Error ? err : new Error(safeString(err));
}

/** @param {unknown} v */
function withEnumerableProperties(v) {
  if (!(v instanceof Error)) return v;
  /** @type {Record<string, unknown>} */
  const ret = Object.assign(/** @type {Record<string, unknown>} */ ({}), { errorType: v.name, errorMessage: v.message, code: /** @type {any} */ (v).code }, v);
  if (typeof v.stack === 'string') ret.stack = v.stack.split('\n');
  return ret;
}

/** The "\t{json}" tail of Lambda's error log lines. @param {Error} error */
function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_k, v) => withEnumerableProperties(v));
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

/** Lambda allows only visible ASCII in the error type header; anything else would make node:http throw. @param {string} t */
function headerSafe(t) {
  const s = String(t).replace(/[^\x20-\x7e]/g, '');
  return s === '' ? 'Unknown' : s;
}

// ---------------------------------------------------------------------------------------------------------
// Console: `<ISO time>\t<request id>\t<LEVEL>\t<util.format(...)>` with inner newlines turned into \r (LogPatch.js)

/** @type {(msg: string, err: unknown) => void} */
let logError = () => {};

/** @param {NodeJS.ProcessEnv} env */
function patchConsole(env) {
  const levels = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
  const wanted = levels.indexOf((env.AWS_LAMBDA_LOG_LEVEL ?? '').toUpperCase());
  const min = wanted === -1 ? 0 : wanted;
  const json = (env.AWS_LAMBDA_LOG_FORMAT ?? '').toUpperCase() === 'JSON';
  /** @type {any} */
  const g = globalThis;

  /** @param {string} level @param {unknown[]} args */
  const text = (level, args) => {
    const line = `${new Date().toISOString()}\t${g[REQUEST_ID_SYMBOL]}\t${level}\t${util.format(...args)}`;
    process.stdout.write(line.replace(/\n/g, '\r') + '\n');
  };
  /** @param {string} level @param {unknown[]} args */
  const structured = (level, args) => {
    /** @type {Record<string, unknown>} */
    const rec = { timestamp: new Date().toISOString(), level, requestId: g[REQUEST_ID_SYMBOL] };
    let line;
    try {
      if (args.length === 1) {
        rec.message = args[0];
        line = JSON.stringify(rec, (_k, v) =>
          v instanceof Error
            ? Object.assign({ errorType: v.constructor?.name ?? 'UnknownError', errorMessage: v.message, stackTrace: v.stack?.split('\n') }, v)
            : v,
        );
      }
    } catch {
      line = undefined;
    }
    if (line === undefined) {
      rec.message = util.format(...args);
      const err = args.find((a) => a instanceof Error);
      if (err instanceof Error) {
        rec.errorType = err.constructor?.name ?? 'UnknownError';
        rec.errorMessage = err.message;
        rec.stackTrace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
      }
      line = JSON.stringify(rec);
    }
    process.stdout.write(line.replace(/\n/g, '\r') + '\n');
  };
  const write = json ? structured : text;
  const noop = () => {};
  /** @param {string} level */
  const make = (level) => (levels.indexOf(level) >= min ? (/** @type {unknown[]} */ ...args) => write(level, args) : noop);

  console.trace = make('TRACE');
  console.debug = make('DEBUG');
  console.info = make('INFO');
  console.log = console.info;
  console.warn = make('WARN');
  console.error = make('ERROR');
  /** @type {any} */ (console).fatal = (/** @type {unknown[]} */ ...args) => write('FATAL', args);
  logError = json
    ? (_msg, err) => console.error(intoError(err))
    : (msg, err) => console.error(msg, toFormatted(intoError(err)));
}

/** @param {string} id */
function setRequestId(id) {
  /** @type {any} */ (globalThis)[REQUEST_ID_SYMBOL] = id;
}

// ---------------------------------------------------------------------------------------------------------
// Loading the handler (UserFunction.js)

/** @param {string} p */
function exists(p) {
  return fs.existsSync(p);
}

/** Nearest package.json says "type": "module"? Stops at node_modules or /, like Lambda. @param {string} folder @returns {boolean} */
function folderIsTypeModule(folder) {
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (exists(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8'))?.type === 'module';
      } catch (e) {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
        return false;
      }
    }
    if (folder === '/') return false;
    folder = path.resolve(folder, '..');
  }
}

/** @param {string} file */
async function importFile(file) {
  return import(pathToFileURL(file).href);
}

/**
 * Lambda's order: the file as named; `.js` via require unless the nearest package.json says "type": "module";
 * then `.js` (type module) / `.mjs` via import(); `.cjs` via require; finally Node's own resolution from the
 * task root (which also produces Lambda's "Cannot find module" message).
 * @param {string} taskRoot @param {string} moduleRoot @param {string} name
 * @returns {Promise<any>}
 */
async function loadModule(taskRoot, moduleRoot, name) {
  const file = path.resolve(taskRoot, moduleRoot, name);
  try {
    if (exists(file)) return require(file);
    const hasJs = exists(file + '.js');
    const typeModule = hasJs && folderIsTypeModule(path.dirname(file));
    if (hasJs && !typeModule) return require(file + '.js');
    if (typeModule) return await importFile(file + '.js');
    if (exists(file + '.mjs')) return await importFile(file + '.mjs');
    if (exists(file + '.cjs')) return require(file + '.cjs');
    return require(require.resolve(name, { paths: [taskRoot, moduleRoot] }));
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(safeString(e));
    const code = /** @type {any} */ (e)?.code;
    // Lambda's RIC maps MODULE_NOT_FOUND (require); the managed runtime also maps ESM's ERR_MODULE_NOT_FOUND.
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') throw new ImportModuleError(safeString(e));
    throw e;
  }
}

/** @param {string} taskRoot @param {string} fullHandler @returns {Promise<Function>} */
async function loadHandler(taskRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const base = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - base.length);
  const match = /^([^.]*)\.(.*)$/.exec(base);
  if (match === null) throw new MalformedHandlerName('Bad handler');
  const [, moduleName = '', handlerPath = ''] = match;
  const app = await loadModule(taskRoot, moduleRoot, moduleName);
  /** @type {any} */
  let fn = app;
  for (const key of handlerPath.split('.')) fn = fn && fn[key];
  if (!fn) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return fn;
}

// ---------------------------------------------------------------------------------------------------------
// Runtime API client: one keep-alive socket, hand-written HTTP/1.1

/**
 * @typedef {{ status: number, headers: Record<string, string>, body: Buffer }} ApiReply
 * @typedef {{ id: string, settled: boolean }} Invocation
 * @typedef {{ socketPath: string } | { host: string, port: number }} Target
 */

/** Where the Runtime API is; also used by the code cache's upload. @type {Target} */
let target = { socketPath: '' };

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * One connection to the Runtime API and the HTTP/1.1 client on it, written for this job instead of node:http:
 * requests go out as one write, replies (Content-Length or chunked) are parsed from the socket's own buffers.
 * node:http's client costs about a millisecond the first time each of its paths runs after the runtime has
 * waited, which is every cold start, and it is not loaded at all now (a restored snapshot skips it entirely).
 * The socket keeps the process alive only while a request is in flight, like an Agent's free socket.
 */
class RapiConnection {
  constructor() {
    const net = require('node:net');
    /** @type {import('node:net').Socket} */
    this.socket = 'socketPath' in target ? net.connect(target.socketPath) : net.connect(target.port, target.host);
    this.socket.setNoDelay(true);
    this.socket.unref();
    /** @type {Buffer[]} */
    this.chunks = [];
    this.buffered = 0;
    /** @type {{ resolve: (r: ApiReply) => void, reject: (e: Error) => void } | null} */
    this.waiting = null;
    /** The parsed head of the reply being read; length -1: chunked. @type {{ status: number, headers: Record<string, string>, bodyStart: number, length: number } | null} */
    this.head = null;
    this.broken = false;
    this.socket.on('data', (/** @type {Buffer} */ d) => this.onData(d));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error('Runtime API connection closed')));
  }

  /** @param {string} head @param {string | undefined} body @returns {Promise<ApiReply>} */
  send(head, body) {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.ref();
      this.socket.write(body === undefined ? head : head + body);
    });
  }

  /** What has arrived so far, as one buffer. */
  joined() {
    const buf = this.chunks.length === 1 ? /** @type {Buffer} */ (this.chunks[0]) : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [buf];
    return buf;
  }

  /** @param {Error} err */
  fail(err) {
    this.broken = true;
    const w = this.waiting;
    this.waiting = null;
    w?.reject(err);
  }

  /** @param {Buffer} d */
  onData(d) {
    this.chunks.push(d);
    this.buffered += d.length;
    if (this.waiting === null) return;
    // A large reply (a code cache rides along with specialisation) arrives in many reads: only the head is
    // looked at until the whole body is there, so each byte is copied once.
    if (this.head === null) {
      const buf = this.joined();
      const end = buf.indexOf(CRLF2);
      if (end === -1) return;
      const lines = buf.toString('latin1', 0, end).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
      if (!Number.isInteger(status)) {
        this.socket.destroy();
        this.fail(new Error(`malformed reply from the Runtime API: ${JSON.stringify(lines[0])}`));
        return;
      }
      /** @type {Record<string, string>} */
      const headers = {};
      for (let i = 1; i < lines.length; i++) {
        const line = /** @type {string} */ (lines[i]);
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
      }
      const chunked = /\bchunked\b/i.test(headers['transfer-encoding'] ?? '');
      const length = chunked ? -1 : status === 204 || status === 304 ? 0 : Number(headers['content-length'] ?? 0);
      this.head = { status, headers, bodyStart: end + 4, length };
    }
    const head = this.head;
    if (head.length >= 0 && this.buffered < head.bodyStart + head.length) return;
    const buf = this.joined();
    let body;
    let used;
    if (head.length < 0) {
      const parts = [];
      let at = head.bodyStart;
      for (;;) {
        const nl = buf.indexOf('\r\n', at, 'latin1');
        if (nl === -1) return;
        const size = parseInt(buf.toString('latin1', at, nl), 16);
        if (!Number.isInteger(size) || size < 0) {
          this.socket.destroy();
          this.fail(new Error('malformed chunked reply from the Runtime API'));
          return;
        }
        if (size === 0) {
          // The last chunk: a blank line, or trailers and then a blank line.
          if (buf.length < nl + 4) return;
          const t = buf[nl + 2] === 13 && buf[nl + 3] === 10 ? nl : buf.indexOf(CRLF2, nl + 2);
          if (t === -1) return;
          used = t + 4;
          break;
        }
        if (buf.length < nl + 2 + size + 2) return;
        parts.push(buf.subarray(nl + 2, nl + 2 + size));
        at = nl + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else {
      body = buf.subarray(head.bodyStart, head.bodyStart + head.length);
      used = head.bodyStart + head.length;
    }
    const { status, headers } = head;
    this.head = null;
    const rest = buf.subarray(used);
    this.chunks = rest.length === 0 ? [] : [rest];
    this.buffered = rest.length;
    const w = /** @type {{ resolve: (r: ApiReply) => void }} */ (this.waiting);
    this.waiting = null;
    if ((headers.connection ?? '').toLowerCase() === 'close') {
      this.broken = true;
      this.socket.end();
    } else {
      this.socket.unref();
      idle.push(this);
    }
    w.resolve({ status, headers, body });
  }
}

/** Connections with no request in flight. @type {RapiConnection[]} */
const idle = [];

/**
 * @param {string} method @param {string} urlPath @param {string | undefined} body
 * @param {string | undefined} errorType
 * @returns {Promise<ApiReply>}
 */
function call(method, urlPath, body, errorType) {
  let conn = idle.pop();
  while (conn !== undefined && conn.broken) conn = idle.pop();
  conn ??= new RapiConnection();
  let head = `${method} ${urlPath} HTTP/1.1\r\nHost: localhost\r\n`;
  if (body !== undefined) {
    head += `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
    if (errorType !== undefined) head += `${ERROR_TYPE_HEADER}: ${headerSafe(errorType)}\r\n`;
  }
  return conn.send(`${head}\r\n`, body);
}

// ---------------------------------------------------------------------------------------------------------
// The invoke loop (Runtime.js, CallbackContext.js)

/** @type {Function} */
let handler = () => {};
let handlerIsAsync = false;
/** @type {'init' | 'invoke'} */
let phase = 'init';
/** @type {Invocation | null} */
let current = null;
/** @type {Promise<unknown> | null} */
let inflight = null;
let exiting = false;
/**
 * Run once when the event loop empties ('beforeExit'); replaced per invocation. This is how
 * callbackWaitsForEmptyEventLoop works, exactly as in Lambda's RIC: callback(null, result) with the flag set
 * (the default) only stores a hook that posts the result on 'beforeExit', i.e. once no timers, sockets or
 * other handles keep the loop alive. The idle keep-alive socket to the Runtime API does not count: node's
 * Agent unrefs free sockets. With the flag cleared, or with context.done/succeed/fail or a returned promise,
 * the result is posted at once and whatever is still pending runs on during the next invocation.
 */
let beforeExit = () => {};
/** @type {{ functionName?: string, functionVersion?: string, memoryLimitInMB?: string, logGroupName?: string, logStreamName?: string }} */
let fnInfo = {};

function scheduleNext() {
  setImmediate(nextInvocation);
}

function nextInvocation() {
  call('GET', `${API}/invocation/next`, undefined, undefined).then((reply) => {
    if (reply.status !== 200) {
      fatal(new Error(`Failed to get next invocation: HTTP ${reply.status} ${reply.body.toString()}`));
      return;
    }
    invoke(reply);
  }, fatal);
}

/** @param {Invocation} inv */
function settle(inv) {
  inv.settled = true;
  if (current === inv) current = null;
  beforeExit = () => {};
}

/** @param {Promise<ApiReply>} p */
function track(p) {
  const t = p.then(
    () => {
      if (inflight === t) inflight = null;
      if (!exiting) scheduleNext();
    },
    (e) => {
      if (inflight === t) inflight = null;
      fatal(e);
    },
  );
  inflight = t;
}

/** @param {Invocation} inv @param {unknown} result */
function postResult(inv, result) {
  if (inv.settled) return;
  let body;
  try {
    body = JSON.stringify(result === undefined ? null : result) ?? 'null';
  } catch {
    postError(inv, new Error('Unable to stringify response body'), true);
    return;
  }
  settle(inv);
  // A non-202 (e.g. 413 for an oversized body) has already failed the invocation on the host: carry on.
  track(call('POST', `${API}/invocation/${encodeURIComponent(inv.id)}/response`, body, undefined));
}

/** @param {Invocation} inv @param {unknown} err @param {boolean} log */
function postError(inv, err, log) {
  if (inv.settled) return Promise.resolve();
  settle(inv);
  if (log) logError('Invoke Error', err);
  const r = toRapidResponse(err);
  const p = call('POST', `${API}/invocation/${encodeURIComponent(inv.id)}/error`, JSON.stringify(r), r.errorType);
  track(p);
  return p;
}

/** @param {ApiReply} reply */
function invoke(reply) {
  const h = reply.headers;
  const id = String(h['lambda-runtime-aws-request-id'] ?? '');
  /** @type {Invocation} */
  const inv = { id, settled: false };
  current = inv;
  setRequestId(id);
  const trace = h['lambda-runtime-trace-id'];
  if (typeof trace === 'string') process.env._X_AMZN_TRACE_ID = trace;
  else delete process.env._X_AMZN_TRACE_ID;

  let waits = true;
  let finished = false;
  /** @param {unknown} err @param {unknown} [result] */
  const callback = (err, result) => {
    if (finished) return;
    finished = true;
    beforeExit = () => {};
    if (err !== undefined && err !== null) postError(inv, err, true);
    else if (!waits) postResult(inv, result);
    else beforeExit = () => setImmediate(() => postResult(inv, result));
  };
  /** @param {unknown} err @param {unknown} [result] */
  const done = (err, result) => {
    if (finished) return;
    finished = true;
    beforeExit = () => {};
    if (err !== undefined && err !== null) postError(inv, err, true);
    else postResult(inv, result);
  };
  // Nothing completed the invocation and the event loop emptied: an async handler's promise never settled
  // (an error, as Lambda), anything else answers null.
  beforeExit = () => {
    finished = true;
    if (handlerIsAsync) postError(inv, new NodeJsExit(), true);
    else postResult(inv, null);
  };

  try {
    const deadline = Number(h['lambda-runtime-deadline-ms']);
    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waits;
      },
      set callbackWaitsForEmptyEventLoop(v) {
        waits = Boolean(v);
      },
      succeed: (/** @type {unknown} */ result) => done(null, result),
      fail: (/** @type {unknown} */ err) => done(err === undefined || err === null ? 'handled' : err, null),
      done,
      functionVersion: fnInfo.functionVersion,
      functionName: fnInfo.functionName,
      memoryLimitInMB: fnInfo.memoryLimitInMB,
      logGroupName: fnInfo.logGroupName,
      logStreamName: fnInfo.logStreamName,
      clientContext: parseHeaderJson(h['lambda-runtime-client-context'], 'ClientContext'),
      identity: parseHeaderJson(h['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
      awsRequestId: id,
      getRemainingTimeInMillis: () => deadline - Date.now(),
    };
    const result = handler(JSON.parse(reply.body.toString('utf8')), context, callback);
    if (result && typeof result.then === 'function') result.then(context.succeed, context.fail);
  } catch (err) {
    callback(err);
  }
}

/** @param {string | string[] | undefined} value @param {string} name */
function parseHeaderJson(value, name) {
  if (typeof value !== 'string') return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${safeString(err)}`);
  }
}

/**
 * An uncaught exception or unhandled rejection: report it (as the init error, or as the error of the running
 * invocation), then exit so that the environment is replaced, as Lambda does (129 / 128).
 * @param {unknown} err @param {number} code
 */
function crash(err, code) {
  if (exiting) return;
  exiting = true;
  /** @type {Promise<unknown>} */
  let p;
  if (phase === 'init') {
    const r = toRapidResponse(err);
    p = call('POST', `${API}/init/error`, JSON.stringify(r), r.errorType);
  } else if (current !== null && !current.settled) {
    p = postError(current, err, false);
  } else {
    p = inflight ?? Promise.resolve();
  }
  p.then(
    () => process.exit(code),
    () => process.exit(code),
  );
}

/** The Runtime API itself failed: nothing sensible is left to do. @param {unknown} err */
function fatal(err) {
  if (exiting) return;
  exiting = true;
  process.stderr.write(`thaw runtime: ${safeString(err instanceof Error ? err.message : err)}\n`);
  process.exit(1);
}

/**
 * Process hooks and the Runtime API target, from this process's argv and environment: the part of main()
 * that a runtime whose handler is already loaded (a SnapStart restore, snapshot-entry.cjs) also needs.
 * Returns false when there is no Runtime API address (already reported).
 */
function connect() {
  const env = process.env;
  process.on('uncaughtException', (err) => {
    logError('Uncaught Exception', err);
    crash(err, 129);
  });
  process.on('unhandledRejection', (reason) => {
    const err = new UnhandledPromiseRejection(reason);
    logError('Unhandled Promise Rejection', err);
    crash(err, 128);
  });
  process.on('beforeExit', () => {
    const f = beforeExit;
    beforeExit = () => {};
    f();
  });

  const argv = process.argv;
  const flag = argv.indexOf('--runtime-api-socket');
  const socketPath = flag === -1 ? undefined : argv[flag + 1];
  if (socketPath !== undefined) {
    target = { socketPath };
  } else {
    const api = env.AWS_LAMBDA_RUNTIME_API ?? '';
    const colon = api.lastIndexOf(':');
    if (colon <= 0) {
      fatal(new Error('AWS_LAMBDA_RUNTIME_API is not set (host:port) and no --runtime-api-socket was given'));
      return false;
    }
    target = { host: api.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(api.slice(colon + 1)) };
  }
  return true;
}

/** @param {NodeJS.ProcessEnv} env */
function readFunctionInfo(env) {
  const functionName = env.AWS_LAMBDA_FUNCTION_NAME;
  fnInfo = {
    functionName,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME ?? (functionName === undefined ? undefined : `/aws/lambda/${functionName}`),
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
  };
}

/** Run the invoke loop with an already-loaded handler. @param {Function} fn */
function serve(fn) {
  handler = fn;
  handlerIsAsync = handler.constructor?.name === 'AsyncFunction';
  phase = 'invoke';
  nextInvocation();
}

async function main() {
  const env = process.env;
  const argv = process.argv;
  if (!connect()) return;

  if (argv.includes('--stem')) {
    // A stem cell: started before it knew its function. Rehearse the paths a cold start takes (HTTP client
    // request and reply, module resolution) so that V8 has compiled them before the function is waiting.
    for (let i = 0; i < 3; i++) await call('GET', `${API}/thaw/code-cache`, undefined, undefined);
    // A response post as an invocation makes one (the id is never an invocation's: the answer is a 400).
    await call('POST', `${API}/invocation/thaw-stem-rehearsal/response`, '{"rehearsal":true}', undefined);
    try {
      require.resolve('./thaw-stem-rehearsal-absent', { paths: ['/var/task'] });
    } catch {
      // Expected: only the resolution path matters.
    }
    await loadHandler(path.join(__dirname, 'rehearsal'), 'index.handler');
    // The host answers once the code is at /var/task.
    const reply = await call('GET', `${API}/thaw/specialize`, undefined, undefined);
    if (reply.status !== 200) {
      fatal(new Error(`specialisation refused (${reply.status})`));
      return;
    }
    const envLength = Number(reply.headers['thaw-env-length'] ?? reply.body.length);
    Object.assign(env, JSON.parse(reply.body.toString('utf8', 0, envLength)));
    // The working directory was the empty stem directory under the mount; enter the function's code.
    process.chdir(env.LAMBDA_TASK_ROOT ?? '/var/task');
    patchConsole(env);
    codeCache.use(reply.body.subarray(envLength), reply.headers['thaw-code-cache'] === 'produce', env.LAMBDA_TASK_ROOT ?? '/var/task');
  } else {
    patchConsole(env);
    await codeCache.setup((method, urlPath) => call(method, urlPath, undefined, undefined), env.LAMBDA_TASK_ROOT ?? process.cwd());
  }

  readFunctionInfo(env);

  let fn;
  try {
    fn = await loadHandler(env.LAMBDA_TASK_ROOT ?? process.cwd(), env._HANDLER ?? '');
  } catch (err) {
    logError('Uncaught Exception', err);
    crash(err, 129);
    return;
  }
  // Only in the environment asked to produce this version's code cache, which is stopped right after.
  await codeCache.afterInit(target);
  serve(fn);
}

// Run as a script: the runtime. Loaded as a library (SnapStart's snapshot-entry.cjs): its parts.
if (require.main === module) main().catch(fatal);
else module.exports = { API, call, connect, readFunctionInfo, patchConsole, serve, toRapidResponse, fatal, logError: (/** @type {string} */ msg, /** @type {unknown} */ err) => logError(msg, err) };
