import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ThawError } from '../util/errors.js';
import { verifySigV4, type Credentials } from './sigv4.js';
import type { ApiContext, ApiRequest, Route } from './context.js';
import { readBody, sendError, sendJson } from './http.js';
import { functionRoutes } from './functions.js';
import { aliasRoutes } from './aliases.js';
import { layerRoutes } from './layers.js';
import { invokeRoutes, unsignedRoutes } from './invoke.js';
import { concurrencyRoutes } from './concurrency.js';
import { eventInvokeConfigRoutes } from './event-invoke-config.js';
import { URL_PREFIX, corsHeaders, urlConfigRoutes, urlEvent, urlNotFound, urlReply } from './urls.js';
import { MAX_SYNC_PAYLOAD } from '../router/invoker.js';
import { storeRoutes } from './store.js';

const signedRoutes: readonly Route[] = [...functionRoutes, ...aliasRoutes, ...invokeRoutes, ...urlConfigRoutes, ...concurrencyRoutes, ...eventInvokeConfigRoutes, ...layerRoutes, ...storeRoutes];

function match(routes: readonly Route[], method: string, path: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
  let pathMatched = false;
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m === null) continue;
    pathMatched = true;
    if (r.method !== method) continue;
    const params: Record<string, string> = {};
    r.keys.forEach((k, i) => {
      params[k] = decodeURIComponent(m[i + 1] as string);
    });
    return { route: r, params };
  }
  return pathMatched ? 'method' : undefined;
}

/**
 * The HTTP front door: the Lambda REST API (control and invoke) with SigV4 on every request, Thaw's own
 * operations, and function URLs. One node:http server; routing is a table of path templates.
 */
export function createApiServer(ctx: ApiContext, credentials: (accessKeyId: string) => Credentials | undefined): Server {
  const server = createServer((req, res) => {
    void handle(ctx, credentials, req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  return server;
}

async function handle(ctx: ApiContext, credentials: (id: string) => Credentials | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const host = req.headers.host ?? '127.0.0.1';
    const url = new URL(req.url ?? '/', `http://${host}`);
    const origin = `http://${host}`;
    const method = req.method ?? 'GET';
    const urlHost = /^([0-9a-f]{32})\.lambda-url\./.exec(host);
    if (urlHost !== null || url.pathname.startsWith(URL_PREFIX)) {
      await functionUrl(ctx, credentials, req, res, url, urlHost?.[1]);
      return;
    }
    let m = match(unsignedRoutes, method, url.pathname);
    let signed = false;
    if (m === undefined) {
      m = match(signedRoutes, method, url.pathname);
      signed = true;
    }
    if (m === undefined || m === 'method') {
      req.resume();
      throw new ThawError('UnknownOperation', 'Unknown operation');
    }
    const body = await readBody(req, m.route.maxBody, m.route.operation);
    if (signed) {
      const v = verifySigV4({ method, rawUrl: req.url ?? '/', headers: req.headers, body }, credentials);
      if (!v.ok) throw new ThawError(v.code, v.message);
    }
    const apiReq: ApiRequest = { method, url, params: m.params, headers: req.headers, body, origin };
    const out = await m.route.handler(ctx, apiReq);
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
    sendError(res, e, ctx.logger);
  }
}

async function functionUrl(ctx: ApiContext, credentials: (id: string) => Credentials | undefined, req: IncomingMessage, res: ServerResponse, url: URL, hostId: string | undefined): Promise<void> {
  let urlId = hostId;
  let rawPath = url.pathname;
  if (urlId === undefined) {
    const rest = url.pathname.slice(URL_PREFIX.length);
    const slash = rest.indexOf('/');
    urlId = slash === -1 ? rest : rest.slice(0, slash);
    rawPath = slash === -1 ? '/' : rest.slice(slash);
  }
  const u = ctx.registry.getUrlById(urlId);
  if (u === undefined) {
    req.resume();
    throw urlNotFound();
  }
  const cors = corsHeaders(u, req.headers.origin);
  if (req.method === 'OPTIONS' && u.cors !== null && req.headers['access-control-request-method'] !== undefined) {
    res.writeHead(200, cors);
    res.end();
    return;
  }
  const body = await readBody(req, MAX_SYNC_PAYLOAD, 'InvokeFunctionUrl');
  let caller: string | undefined;
  if (u.authType === 'AWS_IAM') {
    const v = verifySigV4({ method: req.method ?? 'GET', rawUrl: req.url ?? '/', headers: req.headers, body }, credentials);
    if (!v.ok) {
      sendJson(res, 403, { Message: 'Forbidden' }, { 'x-amzn-errortype': 'AccessDeniedException' });
      return;
    }
    caller = v.accessKeyId;
  }
  const requestId = randomUUID();
  const rawQuery = url.search.startsWith('?') ? url.search.slice(1) : url.search;
  const event = urlEvent(u, req, rawPath, rawQuery, body, requestId, req.headers.host ?? '', caller);
  const r = await ctx.invoker.invoke({ functionName: u.functionName, qualifier: u.qualifier === '' ? undefined : u.qualifier, payload: Buffer.from(JSON.stringify(event)) }, requestId);
  const reply = urlReply(r);
  res.writeHead(reply.status, { 'x-amzn-requestid': requestId, ...cors, ...reply.headers, 'content-length': reply.body.length });
  res.end(reply.body);
}
