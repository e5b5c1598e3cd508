import type { IncomingMessage } from 'node:http';
import { ThawError } from '../util/errors.js';
import { FunctionUrlInput, UpdateFunctionUrlInput, parseInput } from '../control/schema.js';
import { ACCOUNT_ID, functionArn, parseFunctionRef, resolveQualifier } from '../control/arn.js';
import { lambdaTime, type FunctionUrlRecord } from '../control/model.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam, parseJson } from './http.js';

/** Function URLs are served at <origin>/lambda-url/<url-id>/ (and on Host <url-id>.lambda-url.*). */
export const URL_PREFIX = '/lambda-url/';

export const functionUrl = (origin: string, u: FunctionUrlRecord): string => `${origin}${URL_PREFIX}${u.urlId}/`;

function urlTarget(req: ApiRequest): { name: string; qualifier: string } {
  const ref = parseFunctionRef(req.params.FunctionName ?? '');
  return { name: ref.name, qualifier: resolveQualifier(ref, req.url.searchParams.get('Qualifier') ?? undefined) ?? '' };
}

function render(ctx: ApiContext, req: ApiRequest, u: FunctionUrlRecord, withModified: boolean): Record<string, unknown> {
  return {
    FunctionUrl: functionUrl(req.origin, u),
    FunctionArn: functionArn(ctx.region, u.functionName, u.qualifier === '' ? undefined : u.qualifier),
    AuthType: u.authType,
    ...(u.cors === null ? {} : { Cors: u.cors }),
    CreationTime: lambdaTime(u.createdAt),
    ...(withModified ? { LastModifiedTime: lambdaTime(u.lastModified) } : {}),
    InvokeMode: u.invokeMode,
  };
}

function createUrl(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = urlTarget(req);
  const input = parseInput(FunctionUrlInput, parseJson(req.body));
  const u = ctx.registry.createUrl(t.name, t.qualifier, input.AuthType, input.Cors ?? null, input.InvokeMode ?? 'BUFFERED');
  return { status: 201, json: render(ctx, req, u, false) };
}

function getUrl(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = urlTarget(req);
  return { status: 200, json: render(ctx, req, ctx.registry.mustUrl(t.name, t.qualifier), true) };
}

function updateUrl(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = urlTarget(req);
  const input = parseInput(UpdateFunctionUrlInput, parseJson(req.body));
  const u = ctx.registry.updateUrl(t.name, t.qualifier, {
    ...(input.AuthType === undefined ? {} : { authType: input.AuthType }),
    ...(input.Cors === undefined ? {} : { cors: input.Cors }),
    ...(input.InvokeMode === undefined ? {} : { invokeMode: input.InvokeMode }),
  });
  return { status: 200, json: render(ctx, req, u, true) };
}

function deleteUrl(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = urlTarget(req);
  ctx.registry.deleteUrl(t.name, t.qualifier);
  return { status: 204 };
}

function listUrls(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = urlTarget(req);
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 50) ?? 50;
  const page = ctx.registry.listUrls(name, req.url.searchParams.get('Marker') ?? undefined, max);
  return { status: 200, json: { FunctionUrlConfigs: page.items.map((u) => render(ctx, req, u, true)), ...(page.next === undefined ? {} : { NextMarker: page.next }) } };
}

const U = '/2021-10-31/functions/{FunctionName}';
export const urlConfigRoutes: readonly Route[] = [
  route('POST', `${U}/url`, 'CreateFunctionUrlConfig', createUrl),
  route('GET', `${U}/url`, 'GetFunctionUrlConfig', getUrl),
  route('PUT', `${U}/url`, 'UpdateFunctionUrlConfig', updateUrl),
  route('DELETE', `${U}/url`, 'DeleteFunctionUrlConfig', deleteUrl),
  route('GET', `${U}/urls`, 'ListFunctionUrlConfigs', listUrls),
];

const TEXTUAL = /^(text\/|application\/(json|javascript|xml|x-www-form-urlencoded)|[^;]*\+(json|xml))/i;

/** The API Gateway payload format 2.0 event for an HTTP request to a function URL. */
export function urlEvent(u: FunctionUrlRecord, req: IncomingMessage, rawPath: string, rawQuery: string, body: Buffer, requestId: string, host: string, iamCaller?: string): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k === 'cookie') continue;
    headers[k] = Array.isArray(v) ? v.join(',') : v;
  }
  const query: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(rawQuery)) query[k] = k in query ? `${query[k]},${v}` : v;
  const cookieHeader = req.headers.cookie;
  const cookies = cookieHeader === undefined ? undefined : cookieHeader.split(/;\s*/).filter((c) => c !== '');
  const contentType = req.headers['content-type'] ?? '';
  const binary = body.length > 0 && !TEXTUAL.test(contentType);
  const now = new Date();
  const event: Record<string, unknown> = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: rawQuery,
    headers,
    requestContext: {
      accountId: iamCaller === undefined ? 'anonymous' : ACCOUNT_ID,
      apiId: u.urlId,
      ...(iamCaller === undefined ? {} : { authorizer: { iam: { accessKey: iamCaller, accountId: ACCOUNT_ID, callerId: iamCaller, cognitoIdentity: null, principalOrgId: null, userArn: `arn:aws:iam::${ACCOUNT_ID}:user/${iamCaller}`, userId: iamCaller } } }),
      domainName: host,
      domainPrefix: u.urlId,
      http: {
        method: req.method ?? 'GET',
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? '',
        userAgent: req.headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: clfTime(now),
      timeEpoch: now.getTime(),
    },
    isBase64Encoded: binary,
  };
  if (cookies !== undefined) event.cookies = cookies;
  if (Object.keys(query).length > 0) event.queryStringParameters = query;
  if (body.length > 0) event.body = binary ? body.toString('base64') : body.toString('utf8');
  return event;
}

function clfTime(d: Date): string {
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()] as string;
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${mon}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/**
 * CORS headers for a request to a URL with a Cors configuration. A wildcard is never paired with credentials:
 * an origin allowed only through `*` gets `*` and no Access-Control-Allow-Credentials (browsers then send no
 * cookies); an origin listed by name is reflected, with `Vary: Origin` so caches keep answers per origin.
 */
export function corsHeaders(u: FunctionUrlRecord, origin: string | undefined): Record<string, string> {
  if (u.cors === null) return {};
  const c = u.cors as { AllowOrigins?: string[]; AllowMethods?: string[]; AllowHeaders?: string[]; ExposeHeaders?: string[]; AllowCredentials?: boolean; MaxAge?: number };
  const allowed = c.AllowOrigins ?? [];
  const named = origin !== undefined && allowed.includes(origin) && origin !== '*';
  // The answer depends on Origin whenever some origin is allowed by name.
  const h: Record<string, string> = allowed.some((o) => o !== '*') ? { vary: 'Origin' } : {};
  if (origin === undefined || (!named && !allowed.includes('*'))) return h;
  h['access-control-allow-origin'] = named ? origin : '*';
  if (c.AllowMethods !== undefined) h['access-control-allow-methods'] = c.AllowMethods.join(',');
  if (c.AllowHeaders !== undefined) h['access-control-allow-headers'] = c.AllowHeaders.join(',');
  if (c.ExposeHeaders !== undefined) h['access-control-expose-headers'] = c.ExposeHeaders.join(',');
  if (c.AllowCredentials === true && named) h['access-control-allow-credentials'] = 'true';
  if (c.MaxAge !== undefined) h['access-control-max-age'] = String(c.MaxAge);
  return h;
}

export const urlNotFound = (): ThawError => new ThawError('ResourceNotFound', 'The resource you requested does not exist.');
