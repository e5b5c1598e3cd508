import http from 'node:http';
import net from 'node:net';
import { unlink } from 'node:fs/promises';
import { silentLogger, type Logger } from '../util/log.js';
import { receiveCodeCache } from './code-cache-upload.js';
import {
  MAX_RUNTIME_RESPONSE_BYTES,
  type EnvironmentPort,
  type InvocationRequest,
  type RuntimeApiResult,
  type RuntimeErrorReport,
} from './runtime-api-types.js';
import { DEFAULT_RUNTIME_API_LIMITS, EnvironmentBudget, type RuntimeApiLimits } from './rapi-budget.js';
import { readBody } from './rapi-body.js';

/**
 * The AWS Lambda Runtime API (2018-06-01), served to the runtime inside each execution environment.
 *
 * One http.Server does the HTTP parsing for every environment; it never listens itself. Each environment gets
 * its own net.Server (loopback TCP or a Unix socket) whose accepted sockets are tagged with that environment
 * and handed to the parser with `emit('connection')`. A request is therefore only ever routed to the
 * environment whose listener accepted the connection; nothing in the request (path, headers) can name another.
 *
 * The server only speaks HTTP: it checks sizes and shapes and forwards every call to the environment's
 * EnvironmentPort, which owns the lifecycle and answers with a RuntimeApiResult. To answer like AWS does, a
 * port uses the results below.
 *
 * What AWS's runtime interface emulator (github.com/aws/aws-lambda-runtime-interface-emulator,
 * internal/lambda/rapi) answers, all errors as JSON `{"errorMessage": ..., "errorType": ...}`:
 *
 * | situation                                                          | status | errorType               |
 * |--------------------------------------------------------------------|--------|-------------------------|
 * | response/error accepted                                            | 202    | — (body {"status":"OK"}) |
 * | response/error for an id that is not the current invocation        | 400    | InvalidRequestID        |
 * |   (unknown id, error/response before any /next, empty id)          |        |  "Invalid request ID"   |
 * | response/error for the current id once a result was already posted | 400*   | InvalidRequestID        |
 * | call not allowed in the runtime's state (init/error after /next,   | 403    | InvalidStateTransition  |
 * |   restore/next after /next, restore/error when not restoring, ...) |        |                         |
 * | response body over the limit (the invoke fails with                | 413    | RequestEntityTooLarge   |
 * |   Function.ResponseSizeTooLarge)                                   |        |                         |
 * | Lambda-Runtime-Function-Response-Mode other than "streaming"       | 400    | InvalidFunctionResponseMode |
 * | request body cut short                                             | 400    | TruncatedHTTPRequest    |
 * | anything else that went wrong in the platform                      | 500    | InternalServerError     |
 * | unknown path (chi: text "404 page not found"; we send JSON)        | 404    | —                       |
 * | known path, wrong method (chi: empty body)                         | 405    | —                       |
 *
 * (*) The emulator answers a second post for the same id with 400 InvalidRequestID once the invoke has been
 * released (ErrResponseSent and ErrInvalidInvokeID both render InvalidRequestID), and with 403
 * InvalidStateTransition ("State transition from RuntimeResponseSentState to InvocationResponse failed ...")
 * in the short window before. Thaw environments should answer 400 InvalidRequestID: the id is no longer current.
 *
 * A second /next while an invocation is running is allowed by the emulator (the Running state accepts Ready()):
 * it is a long poll like any other.
 */

/** The emulator's runtime state names (internal/lambda/core/runtime_state_names.go), used in its 403 messages. */
export const RAPI_RUNTIME_STATES = Object.freeze({
  Started: 'Started',
  InitError: 'InitError',
  Ready: 'Ready',
  Running: 'Running',
  RestoreReady: 'RestoreReady',
  Restoring: 'Restoring',
  InvocationResponse: 'InvocationResponse',
  InvocationErrorResponse: 'InvocationErrorResponse',
  ResponseSent: 'RuntimeResponseSentState',
  RestoreError: 'RuntimeRestoreErrorState',
} as const);
export type RapiRuntimeState = (typeof RAPI_RUNTIME_STATES)[keyof typeof RAPI_RUNTIME_STATES];

type RapiErrorResult = Exclude<RuntimeApiResult, { readonly status: 202 }>;

/** Accepted (202). Frozen and shared: return it rather than allocating a new object per call. */
export const ACCEPTED: RuntimeApiResult = Object.freeze({ status: 202 } as const);

/** The emulator's error replies (internal/lambda/rapi/rendering), ready for an EnvironmentPort to return. */
export const RAPI_ERRORS = Object.freeze({
  InvalidRequestID: Object.freeze({ status: 400, errorType: 'InvalidRequestID', errorMessage: 'Invalid request ID' }),
  InvalidFunctionResponseMode: Object.freeze({
    status: 400,
    errorType: 'InvalidFunctionResponseMode',
    errorMessage: 'Invalid function response mode',
  }),
  TruncatedHTTPRequest: Object.freeze({
    status: 400,
    errorType: 'TruncatedHTTPRequest',
    errorMessage: 'HTTP request detected as truncated',
  }),
  RequestEntityTooLarge: Object.freeze({
    status: 413,
    errorType: 'RequestEntityTooLarge',
    errorMessage: `Exceeded maximum allowed payload size (${MAX_RUNTIME_RESPONSE_BYTES} bytes).`,
  }),
  InternalServerError: Object.freeze({
    status: 500,
    errorType: 'InternalServerError',
    errorMessage: 'Internal Server Error',
  }),
} as const satisfies Record<string, RapiErrorResult>);

/** The emulator's 403 for a call the runtime's current state does not allow. */
export function invalidStateTransition(from: RapiRuntimeState, to: RapiRuntimeState): RuntimeApiResult {
  return {
    status: 403,
    errorType: 'InvalidStateTransition',
    errorMessage: `State transition from ${from} to ${to} failed for runtime. Error: State transition is not allowed`,
  };
}

/** Error type the invoke fails with when the runtime posts a body over the limit (fatalerror.FunctionOversizedResponse). */
export const RESPONSE_SIZE_TOO_LARGE = 'Function.ResponseSizeTooLarge';

/** The error reported to the environment for an oversized body: what Lambda returns to the caller. */
const OVERSIZED_REPORT: RuntimeErrorReport = Object.freeze({
  errorType: RESPONSE_SIZE_TOO_LARGE,
  body: Buffer.from(
    JSON.stringify({
      errorMessage: `Response payload size exceeded maximum allowed payload size (${MAX_RUNTIME_RESPONSE_BYTES} bytes).`,
      errorType: RESPONSE_SIZE_TOO_LARGE,
    }),
  ),
});

const RUNTIME_OR_FUNCTION_ERROR_TYPE = /^(Runtime|Function)\.[A-Z][a-zA-Z]+$/;

/**
 * The emulator's scrubbing of Lambda-Runtime-Function-Error-Type (fatalerror.GetValidRuntimeOrFunctionErrorType)
 * for places where the value leaves the environment as a platform error type (REPORT lines, init failure reasons):
 * `Runtime.X` / `Function.X` pass, anything else becomes Function.Unknown or Runtime.Unknown. Stricter than the
 * emulator in one way: the pattern is anchored (the Go regexp is not, so "x Runtime.Foo y" passes there).
 */
export function validRuntimeOrFunctionErrorType(errorType: string | undefined): string {
  if (errorType !== undefined && RUNTIME_OR_FUNCTION_ERROR_TYPE.test(errorType)) return errorType;
  return errorType?.startsWith('Function.') === true ? 'Function.Unknown' : 'Runtime.Unknown';
}

export class RuntimeApiServerError extends Error {
  readonly code: 'RAPI_ENV_ATTACHED' | 'RAPI_SERVER_CLOSED';
  constructor(code: RuntimeApiServerError['code'], message: string) {
    super(message);
    this.name = 'RuntimeApiServerError';
    this.code = code;
  }
}

export type RuntimeApiTransport = { readonly transport: 'tcp' } | { readonly transport: 'unix'; readonly socketPath: string };

export interface RuntimeApiServerOptions {
  readonly logger?: Logger;
  /** Time a runtime may take to send a request's headers once it started one. Default 10 s. */
  readonly headersTimeoutMs?: number;
  /** Each environment's budget (connections, body bytes, request rate, timeouts); DEFAULT_RUNTIME_API_LIMITS otherwise. */
  readonly limits?: Partial<RuntimeApiLimits>;
}

interface Env {
  readonly id: string;
  readonly port: EnvironmentPort;
  readonly listener: net.Server;
  readonly sockets: Set<net.Socket>;
  /** Cancel functions of pending /next and /restore/next long polls. */
  readonly polls: Set<() => void>;
  readonly budget: EnvironmentBudget;
  closed: boolean;
}

const ENV = Symbol('thaw.runtimeApi.env');
type TaggedSocket = net.Socket & { [ENV]?: Env };

const PREFIX = '/2018-06-01/runtime/';
const INVOCATION = 'invocation/';
const ERROR_TYPE_HEADER = 'lambda-runtime-function-error-type';

const ACCEPTED_BODY = Buffer.from('{"status":"OK"}');
const ACCEPTED_HEADERS = ['Content-Type', 'application/json', 'Content-Length', String(ACCEPTED_BODY.length)];
const RESTORED_HEADERS = ['Content-Length', '0'];
const NOT_FOUND_BODY = Buffer.from(JSON.stringify({ errorMessage: 'Not Found', errorType: 'NotFound' }));
const EMPTY = Buffer.alloc(0);

type Route =
  | 'next'
  | 'response'
  | 'error'
  | 'init-error'
  | 'restore-next'
  | 'restore-error'
  | 'specialize'
  | 'code-cache'
  | 'code-cache-post';

export class RuntimeApiServer {
  private readonly log: Logger;
  private readonly http: http.Server;
  private readonly envs = new Map<string, Env>();
  private closed = false;
  private readonly limits: RuntimeApiLimits;

  constructor(opts: RuntimeApiServerOptions = {}) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'runtime-api' });
    this.limits = Object.freeze({ ...DEFAULT_RUNTIME_API_LIMITS, ...(opts.headersTimeoutMs === undefined ? {} : { headersTimeoutMs: opts.headersTimeoutMs }), ...opts.limits });
    this.http = http.createServer(
      {
        // A runtime keeps one connection for its whole life and long-polls /next on it without a deadline: a
        // long poll is a request already received, so neither timeout below ends it. They end connections that
        // send nothing (idle) or trickle a request (headers or body) in.
        keepAliveTimeout: this.limits.idleTimeoutMs,
        requestTimeout: this.limits.requestTimeoutMs,
        headersTimeout: this.limits.headersTimeoutMs,
        connectionsCheckingInterval: 5_000,
        requireHostHeader: false,
      },
      (req, res) => this.onRequest(req, res),
    );
    // The parser never listens, but headersTimeout is enforced by connection tracking that http.Server only
    // arms on 'listening' (setupConnectionsTracking in lib/_http_server.js). Arm it explicitly; close() disarms it.
    this.http.emit('listening');
  }

  /** Serve the Runtime API for one environment and return the address its runtime should use. */
  async attach(envId: string, port: EnvironmentPort, where: RuntimeApiTransport): Promise<{ address: string }> {
    if (this.closed) throw new RuntimeApiServerError('RAPI_SERVER_CLOSED', 'Runtime API server is closed');
    if (this.envs.has(envId)) {
      throw new RuntimeApiServerError('RAPI_ENV_ATTACHED', `environment ${envId} already has a Runtime API`);
    }
    const listener = net.createServer({ allowHalfOpen: true, noDelay: true });
    const env: Env = { id: envId, port, listener, sockets: new Set(), polls: new Set(), budget: new EnvironmentBudget(this.limits), closed: false };
    this.envs.set(envId, env);
    listener.on('connection', (socket: TaggedSocket) => this.adopt(env, socket));
    try {
      let address: string;
      if (where.transport === 'unix') {
        await unlinkStale(where.socketPath);
        await listen(listener, { path: where.socketPath });
        address = `unix:${where.socketPath}`;
      } else {
        await listen(listener, { host: '127.0.0.1', port: 0 });
        const a = listener.address() as net.AddressInfo;
        address = `${a.address}:${a.port}`;
      }
      listener.on('error', (err) => this.log.warn({ envId, err }, 'runtime api listener error'));
      if (env.closed) throw new RuntimeApiServerError('RAPI_SERVER_CLOSED', `environment ${envId} was detached`);
      this.log.debug({ envId, address }, 'runtime api attached');
      return { address };
    } catch (err) {
      if (this.envs.get(envId) === env) this.envs.delete(envId);
      env.closed = true;
      listener.close();
      throw err;
    }
  }

  /** Stop listening for one environment, destroy its connections and abort its pending long polls. */
  async detach(envId: string): Promise<void> {
    const env = this.envs.get(envId);
    if (env === undefined) return;
    this.envs.delete(envId);
    env.closed = true;
    for (const cancel of env.polls) cancel();
    env.polls.clear();
    const closed = new Promise<void>((resolve) => env.listener.close(() => resolve()));
    for (const socket of env.sockets) socket.destroy();
    env.sockets.clear();
    await closed;
    this.log.debug({ envId }, 'runtime api detached');
  }

  /** Detach every environment and release the parser. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.envs.keys()].map((id) => this.detach(id)));
    // Not listening, so net.Server.close reports ERR_SERVER_NOT_RUNNING; http's pre-close hook still runs and
    // stops the connection-tracking timer armed in the constructor.
    this.http.close(() => undefined);
    this.http.closeAllConnections();
  }

  private adopt(env: Env, socket: TaggedSocket): void {
    if (env.closed) {
      socket.destroy();
      return;
    }
    if (!env.budget.admitConnection(env.sockets.size)) {
      if (env.budget.refused.connections === 1) this.log.warn({ envId: env.id, max: this.limits.maxConnections }, 'runtime api: connection limit reached; further connections are closed');
      socket.destroy();
      return;
    }
    socket[ENV] = env;
    env.sockets.add(socket);
    socket.once('close', () => env.sockets.delete(socket));
    this.http.emit('connection', socket);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const env = (req.socket as TaggedSocket)[ENV];
    if (env === undefined || env.closed) {
      res.destroy();
      return;
    }
    const wait = env.budget.admitRequest();
    if (wait === 0) {
      this.route(env, req, res);
    } else if (wait < 0) {
      if (env.budget.refused.requests === 1) this.log.warn({ envId: env.id }, 'runtime api: too many requests waiting; closing connections that send more');
      req.socket.destroy();
    } else {
      setTimeout(() => {
        env.budget.waited();
        if (env.closed || req.socket.destroyed) return;
        this.route(env, req, res);
      }, wait).unref();
    }
  }

  private route(env: Env, req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '';
    let route: Route | undefined;
    let requestId = '';
    if (url.startsWith(PREFIX)) {
      const q = url.indexOf('?', PREFIX.length);
      const path = q === -1 ? url.slice(PREFIX.length) : url.slice(PREFIX.length, q);
      switch (path) {
        case 'invocation/next':
          route = 'next';
          break;
        case 'init/error':
          route = 'init-error';
          break;
        case 'restore/next':
          route = 'restore-next';
          break;
        case 'restore/error':
          route = 'restore-error';
          break;
        case 'thaw/specialize':
          route = 'specialize';
          break;
        case 'thaw/code-cache':
          route = req.method === 'POST' ? 'code-cache-post' : 'code-cache';
          break;
        default:
          if (path.startsWith(INVOCATION)) {
            const slash = path.indexOf('/', INVOCATION.length);
            if (slash !== -1) {
              const action = path.slice(slash + 1);
              if (action === 'response' || action === 'error') {
                route = action;
                requestId = path.slice(INVOCATION.length, slash);
              }
            }
          }
      }
    }
    if (route === undefined) {
      sendBody(res, 404, NOT_FOUND_BODY);
      return;
    }
    const wantGet = route === 'next' || route === 'restore-next' || route === 'specialize' || route === 'code-cache';
    if (req.method !== (wantGet ? 'GET' : 'POST')) {
      res.writeHead(405, ['Allow', wantGet ? 'GET' : 'POST', 'Content-Length', '0']);
      res.end();
      return;
    }
    switch (route) {
      case 'next':
        this.longPoll(env, res, false);
        return;
      case 'restore-next':
        this.longPoll(env, res, true);
        return;
      case 'response':
      case 'error': {
        const id = decodeId(requestId);
        if (id === undefined) {
          // Consume nothing: the id can never be current. Node discards the unread body after the reply.
          sendResult(res, RAPI_ERRORS.InvalidRequestID);
          return;
        }
        this.post(env, req, res, route, id);
        return;
      }
      case 'init-error':
      case 'restore-error':
        this.post(env, req, res, route, '');
        return;
      case 'specialize':
        this.specialize(env, res);
        return;
      case 'code-cache': {
        const c = env.port.codeCache?.() ?? { produce: false };
        const body = c.data ?? EMPTY;
        res.writeHead(c.data === undefined ? 204 : 200, ['Content-Length', String(body.length), 'Thaw-Code-Cache', c.produce ? 'produce' : 'use']);
        res.end(body);
        return;
      }
      case 'code-cache-post':
        receiveCodeCache(req, res, env.port.codeCacheLimit?.() ?? 0, (body) => {
          if (env.closed) {
            res.destroy();
            return;
          }
          sendResult(res, env.port.storeCodeCache?.(body) ?? ACCEPTED);
        });
        return;
    }
  }

  /** Thaw extension: a stem cell's long poll for the function it becomes (the environment variables to apply). */
  private specialize(env: Env, res: http.ServerResponse): void {
    const port = env.port;
    if (port.specialize === undefined) {
      sendResult(res, invalidStateTransition(RAPI_RUNTIME_STATES.Ready, RAPI_RUNTIME_STATES.Started));
      return;
    }
    const poll = new AbortController();
    let pending = true;
    const cancel = (): void => {
      if (!pending) return;
      pending = false;
      env.polls.delete(cancel);
      poll.abort();
    };
    env.polls.add(cancel);
    res.once('close', cancel);
    port.specialize(poll.signal).then((vars) => {
      if (!pending) return;
      pending = false;
      env.polls.delete(cancel);
      // The code cache rides along with the variables: one round trip fewer on the cold-start path.
      const json = Buffer.from(JSON.stringify(vars));
      const cache = port.codeCache?.() ?? { produce: false };
      const data = cache.data ?? EMPTY;
      res.writeHead(200, [
        'Content-Type', 'application/octet-stream',
        'Content-Length', String(json.length + data.length),
        'Thaw-Env-Length', String(json.length),
        'Thaw-Code-Cache', cache.data !== undefined ? 'use' : cache.produce ? 'produce' : 'none',
      ]);
      res.end(data.length === 0 ? json : Buffer.concat([json, data]));
    }, (err: unknown) => {
      if (!pending) return;
      pending = false;
      env.polls.delete(cancel);
      sendResult(res, isErrorResult(err) ? err : RAPI_ERRORS.InternalServerError);
    });
  }

  private longPoll(env: Env, res: http.ServerResponse, restore: boolean): void {
    const poll = new AbortController();
    let pending = true;
    // Settles the poll exactly once: by the port (returns true), or by a hang-up or detach (aborts the signal).
    const settle = (): boolean => {
      if (!pending) return false;
      pending = false;
      env.polls.delete(cancel);
      return true;
    };
    const cancel = (): void => {
      if (settle()) poll.abort();
    };
    env.polls.add(cancel);
    // 'close' also follows a normal finish, when the poll is already settled: then cancel does nothing.
    res.once('close', cancel);
    const onRejected = (err: unknown): void => {
      if (!settle()) return;
      if (isErrorResult(err)) {
        sendResult(res, err);
      } else {
        this.log.debug({ envId: env.id, err }, 'long poll rejected');
        sendResult(res, RAPI_ERRORS.InternalServerError);
      }
    };
    try {
      if (restore) {
        env.port.restoreNext(poll.signal).then(() => {
          if (!settle()) return;
          res.writeHead(200, RESTORED_HEADERS);
          res.end();
        }, onRejected);
      } else {
        env.port.next(poll.signal).then((inv) => {
          if (!settle()) {
            this.log.warn({ envId: env.id, requestId: inv.requestId }, 'invocation resolved after the runtime hung up');
            return;
          }
          this.sendInvocation(env, res, inv);
        }, onRejected);
      }
    } catch (err) {
      this.log.error({ envId: env.id, err }, 'environment port threw');
      onRejected(err);
    }
  }

  private sendInvocation(env: Env, res: http.ServerResponse, inv: InvocationRequest): void {
    const headers = [
      'Content-Type', 'application/json',
      'Content-Length', String(inv.payload.length),
      'Lambda-Runtime-Aws-Request-Id', inv.requestId,
      'Lambda-Runtime-Deadline-Ms', String(inv.deadlineMs),
      'Lambda-Runtime-Invoked-Function-Arn', inv.invokedFunctionArn,
    ];
    if (inv.traceId !== '') headers.push('Lambda-Runtime-Trace-Id', inv.traceId);
    if (inv.clientContext !== undefined) headers.push('Lambda-Runtime-Client-Context', inv.clientContext);
    if (inv.cognitoIdentity !== undefined) headers.push('Lambda-Runtime-Cognito-Identity', inv.cognitoIdentity);
    try {
      res.writeHead(200, headers);
    } catch (err) {
      // A header value with characters HTTP cannot carry; the API front door should have refused it.
      this.log.error({ envId: env.id, requestId: inv.requestId, err }, 'cannot send invocation headers');
      sendResult(res, RAPI_ERRORS.InternalServerError);
      return;
    }
    res.end(inv.payload);
  }

  private post(env: Env, req: http.IncomingMessage, res: http.ServerResponse, route: Route, id: string): void {
    const header = req.headers[ERROR_TYPE_HEADER];
    const errorType = typeof header === 'string' ? header : undefined;
    readBody(req, MAX_RUNTIME_RESPONSE_BYTES, env.budget, (body) => {
      if (env.closed || body === 'over-budget') {
        this.overBudget(env, req);
        return;
      }
      let result: RuntimeApiResult;
      try {
        result = body === 'too-large' ? this.oversized(env, route, id, errorType) : this.forward(env, route, id, body, errorType);
      } catch (err) {
        this.log.error({ envId: env.id, route, err }, 'environment port threw');
        result = RAPI_ERRORS.InternalServerError;
      }
      sendResult(res, result);
    });
  }

  /** The environment has no room for the body (or is gone): its connection is closed, the body never kept. */
  private overBudget(env: Env, req: http.IncomingMessage): void {
    if (!env.closed && env.budget.refused.bytes === 1) this.log.warn({ envId: env.id, max: this.limits.maxBytesInFlight }, 'runtime api: request bodies over budget; connections closed');
    req.socket.destroy();
  }

  private forward(env: Env, route: Route, id: string, body: Buffer, errorType: string | undefined): RuntimeApiResult {
    switch (route) {
      case 'response':
        return env.port.response(id, body);
      case 'error':
        return env.port.error(id, { errorType, body });
      case 'init-error':
        return env.port.initError({ errorType, body });
      default:
        return env.port.restoreError({ errorType, body });
    }
  }

  /** A body over the limit: the emulator fails the invoke with Function.ResponseSizeTooLarge and answers 413. */
  private oversized(env: Env, route: Route, id: string, errorType: string | undefined): RuntimeApiResult {
    let result: RuntimeApiResult;
    if (route === 'response' || route === 'error') {
      result = env.port.error(id, OVERSIZED_REPORT);
    } else {
      const type = errorType ?? 'Runtime.Unknown';
      const report: RuntimeErrorReport = {
        errorType: type,
        body: Buffer.from(
          JSON.stringify({
            errorMessage: `Error payload size exceeded maximum allowed payload size (${MAX_RUNTIME_RESPONSE_BYTES} bytes).`,
            errorType: type,
          }),
        ),
      };
      result = route === 'init-error' ? env.port.initError(report) : env.port.restoreError(report);
    }
    return result.status === 202 ? RAPI_ERRORS.RequestEntityTooLarge : result;
  }
}

function decodeId(raw: string): string | undefined {
  if (raw === '') return undefined;
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function isErrorResult(x: unknown): x is RapiErrorResult {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as { status?: unknown; errorType?: unknown; errorMessage?: unknown };
  return typeof r.status === 'number' && r.status >= 400 && typeof r.errorType === 'string' && typeof r.errorMessage === 'string';
}

function sendResult(res: http.ServerResponse, result: RuntimeApiResult): void {
  if (res.headersSent || res.destroyed) return;
  if (result.status === 202) {
    res.writeHead(202, ACCEPTED_HEADERS);
    res.end(ACCEPTED_BODY);
    return;
  }
  sendBody(res, result.status, Buffer.from(JSON.stringify({ errorMessage: result.errorMessage, errorType: result.errorType })));
}

function sendBody(res: http.ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, ['Content-Type', 'application/json', 'Content-Length', String(body.length)]);
  res.end(body);
}

function listen(server: net.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function unlinkStale(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
