import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ThawError } from '../util/errors.js';
import { beginSigV4, type Credentials } from './sigv4.js';
import type { ApiContext, ApiRequest, Route } from './context.js';
import { sendError, sendJson } from './http.js';
import { functionRoutes } from './functions.js';
import { aliasRoutes } from './aliases.js';
import { layerRoutes } from './layers.js';
import { invokeRoutes, unsignedRoutes } from './invoke.js';
import { concurrencyRoutes } from './concurrency.js';
import { eventInvokeConfigRoutes } from './event-invoke-config.js';
import { URL_PREFIX, corsHeaders, urlConfigRoutes, urlEvent, urlNotFound } from './urls.js';
import { replyHeaders, urlReply } from './url-response.js';
import { MAX_EVENT_PAYLOAD, MAX_SYNC_PAYLOAD } from '../router/invoker.js';
import { storeRoutes } from './store.js';
import { ByteBudget, httpLimits, type HttpLimits } from './limits.js';
import { BodyHold, readBody, type BodyBudgets } from './body.js';
import { ConnectionGuard } from './connections.js';
import { answerClientError, lingerOnClose } from './linger.js';
import { decodePathParam, requestTarget, type RequestTarget } from './target.js';

const signedRoutes: readonly Route[] = [...functionRoutes, ...aliasRoutes, ...invokeRoutes, ...urlConfigRoutes, ...concurrencyRoutes, ...eventInvokeConfigRoutes, ...layerRoutes, ...storeRoutes];

/** A refused request's unread body is read and dropped when it is this small, else the connection is closed. */
const DRAIN_MAX = 64 * 1024;

function match(routes: readonly Route[], method: string, path: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
  let pathMatched = false;
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m === null) continue;
    pathMatched = true;
    if (r.method !== method) continue;
    const params: Record<string, string> = {};
    r.keys.forEach((k, i) => {
      params[k] = decodePathParam(m[i + 1] as string);
    });
    return { route: r, params };
  }
  return pathMatched ? 'method' : undefined;
}

interface Front {
  readonly ctx: ApiContext;
  readonly credentials: (id: string) => Credentials | undefined;
  readonly budgets: BodyBudgets;
  readonly guard: ConnectionGuard;
}

/**
 * The HTTP front door: the Lambda REST API (control and invoke) with SigV4 on every request, Thaw's own
 * operations, and function URLs. One node:http server; routing is a table of path templates.
 *
 * Nothing is held for a client before it proves itself: the signature is checked from the headers when the
 * client declares its payload hash (the body must then hash to it), bodies stream under per-route caps and
 * two shared byte budgets (all bodies; bodies not yet verified), requests have header and total timeouts, and
 * anonymous connections are capped (see ConnectionGuard).
 */
export function createApiServer(ctx: ApiContext, credentials: (accessKeyId: string) => Credentials | undefined, limits: Partial<HttpLimits> = {}): Server {
  const l = httpLimits(limits);
  const front: Front = {
    ctx,
    credentials,
    budgets: { total: new ByteBudget(l.maxBufferedBytes), unverified: new ByteBudget(l.maxUnverifiedBytes) },
    guard: new ConnectionGuard(l.maxAnonymousConnections),
  };
  const server = createServer({
    requestTimeout: l.requestTimeoutMs,
    headersTimeout: l.headersTimeoutMs,
    // How often node looks for connections past those timeouts.
    connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(l.headersTimeoutMs / 4))),
    keepAliveTimeout: 65_000,
  }, (req, res) => {
    void handle(front, req, res);
  });
  server.maxConnections = l.maxConnections;
  server.on('clientError', answerClientError);
  front.guard.attach(server);
  return server;
}

async function handle(front: Front, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const hold = new BodyHold(front.budgets, true);
  res.once('close', () => {
    hold.release();
    front.guard.done(req.socket);
  });
  try {
    const t = requestTarget(req);
    const method = req.method ?? 'GET';
    const urlHost = /^([0-9a-f]{32})\.lambda-url\./.exec(t.host);
    if (urlHost !== null || t.url.pathname.startsWith(URL_PREFIX)) {
      await functionUrl(front, req, res, t, urlHost?.[1], hold);
      return;
    }
    let m = match(unsignedRoutes, method, t.url.pathname);
    let signed = false;
    if (m === undefined) {
      m = match(signedRoutes, method, t.url.pathname);
      signed = true;
    }
    if (m === undefined || m === 'method') throw new ThawError('UnknownOperation', 'Unknown operation');
    const limit = bodyLimit(m.route, req);
    let body: Buffer;
    if (signed) {
      body = (await authenticated(front, req, hold, limit, m.route.operation)).body;
    } else {
      // Routes that carry their own authorisation (a signed link in the query) take no body worth keeping.
      body = (await readBody(req, { limit, operation: m.route.operation, hold })).body;
    }
    const apiReq: ApiRequest = { method, url: t.url, params: m.params, headers: req.headers, body, origin: t.origin };
    const out = await m.route.handler(front.ctx, apiReq);
    const headers = { 'x-amzn-requestid': randomUUID(), ...out.headers };
    if (out.raw !== undefined) {
      res.writeHead(out.status, { 'content-length': out.raw.length, ...headers });
      res.end(out.raw);
    } else if (out.json !== undefined) {
      sendJson(res, out.status, out.json, headers);
    } else {
      res.writeHead(out.status, headers);
      res.end();
    }
  } catch (e) {
    settleUnread(req, res);
    sendError(res, e, front.ctx.logger);
  }
}

/** The route's body cap; an Event invocation is held to Lambda's 256 KB event limit from the start. */
function bodyLimit(r: Route, req: IncomingMessage): number {
  if (r.operation === 'InvokeFunction' && req.headers['x-amz-invocation-type'] === 'Event') return Math.min(r.maxBody, MAX_EVENT_PAYLOAD);
  return r.maxBody;
}

/**
 * Verify SigV4 and read the body. With a declared payload hash the signature is checked before the body is
 * read (and the body must hash to it); without one the body is read under the unverified budget first.
 */
async function authenticated(front: Front, req: IncomingMessage, hold: BodyHold, limit: number, operation: string): Promise<{ body: Buffer; accessKeyId: string }> {
  const begun = beginSigV4({ method: req.method ?? 'GET', rawUrl: req.url ?? '/', headers: req.headers }, front.credentials);
  if (!begun.ok) throw new ThawError(begun.code, begun.message);
  const declared = begun.declaredSha256;
  if (declared !== undefined) {
    const v = begun.finish(declared);
    if (!v.ok) throw new ThawError(v.code, v.message);
    hold.verified();
    front.guard.trust(req.socket);
    return { body: (await readBody(req, { limit, operation, hold, expectedSha256: declared })).body, accessKeyId: v.accessKeyId };
  }
  const r = await readBody(req, { limit, operation, hold });
  const v = begun.finish(r.sha256);
  if (!v.ok) throw new ThawError(v.code, v.message);
  hold.verified();
  front.guard.trust(req.socket);
  return { body: r.body, accessKeyId: v.accessKeyId };
}

/**
 * Before answering a request whose body was not read: a small remainder is read and dropped so the connection
 * can serve the next request; anything larger (or of unknown length) closes the connection after the answer.
 */
function settleUnread(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared <= DRAIN_MAX) {
    req.resume();
    return;
  }
  if (!res.headersSent) res.setHeader('connection', 'close');
  lingerOnClose(req.socket);
}

async function functionUrl(front: Front, req: IncomingMessage, res: ServerResponse, t: RequestTarget, hostId: string | undefined, hold: BodyHold): Promise<void> {
  const { ctx } = front;
  let urlId = hostId;
  let rawPath = t.url.pathname;
  if (urlId === undefined) {
    const rest = t.url.pathname.slice(URL_PREFIX.length);
    const slash = rest.indexOf('/');
    urlId = slash === -1 ? rest : rest.slice(0, slash);
    rawPath = slash === -1 ? '/' : rest.slice(slash);
  }
  const u = ctx.registry.getUrlById(urlId);
  if (u === undefined) throw urlNotFound();
  const cors = corsHeaders(u, req.headers.origin);
  if (req.method === 'OPTIONS' && u.cors !== null && req.headers['access-control-request-method'] !== undefined) {
    settleUnread(req, res);
    res.writeHead(200, cors);
    res.end();
    return;
  }
  let caller: string | undefined;
  let body: Buffer;
  if (u.authType === 'AWS_IAM') {
    try {
      ({ body, accessKeyId: caller } = await authenticated(front, req, hold, MAX_SYNC_PAYLOAD, 'InvokeFunctionUrl'));
    } catch (e) {
      if (e instanceof ThawError && e.status === 403) {
        settleUnread(req, res);
        sendJson(res, 403, { Message: 'Forbidden' }, { 'x-amzn-errortype': 'AccessDeniedException' });
        return;
      }
      throw e;
    }
  } else {
    body = (await readBody(req, { limit: MAX_SYNC_PAYLOAD, operation: 'InvokeFunctionUrl', hold })).body;
  }
  front.guard.busyWith(req.socket);
  const requestId = randomUUID();
  const rawQuery = t.url.search.startsWith('?') ? t.url.search.slice(1) : t.url.search;
  const event = urlEvent(u, req, rawPath, rawQuery, body, requestId, t.host, caller);
  const r = await ctx.invoker.invoke({ functionName: u.functionName, qualifier: u.qualifier === '' ? undefined : u.qualifier, payload: Buffer.from(JSON.stringify(event)) }, requestId);
  const reply = urlReply(r);
  res.writeHead(reply.status, replyHeaders(requestId, cors, reply));
  res.end(reply.hasBody ? reply.body : undefined);
}
