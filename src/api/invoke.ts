import { timingSafeEqual } from 'node:crypto';
import { ThawError } from '../util/errors.js';
import { MAX_SYNC_PAYLOAD } from '../router/invoker.js';
import { parseFunctionRef, resolveQualifier } from '../control/arn.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam } from './http.js';
import { codeLinkSignature, target } from './functions.js';
import { checkJsonDepth } from './json-depth.js';
import { MAX_JSON_DEPTH } from './limits.js';

function header(req: ApiRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function invoke(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const t = target(req);
  const type = header(req, 'x-amz-invocation-type') ?? 'RequestResponse';
  const logType = header(req, 'x-amz-log-type') ?? 'None';
  if (!['RequestResponse', 'Event', 'DryRun'].includes(type)) {
    throw new ThawError('Validation', `1 validation error detected: Value '${type}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]`);
  }
  if (!['None', 'Tail'].includes(logType)) {
    throw new ThawError('Validation', `1 validation error detected: Value '${logType}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [Tail, None]`);
  }
  checkJsonDepth(req.body, MAX_JSON_DEPTH);
  const clientContext = header(req, 'x-amz-client-context');
  const request = {
    functionName: t.name,
    qualifier: t.qualifier,
    payload: req.body,
    ...(clientContext === undefined ? {} : { clientContextBase64: clientContext }),
  };
  if (type === 'DryRun') {
    ctx.invoker.check(request, MAX_SYNC_PAYLOAD);
    return { status: 204 };
  }
  if (type === 'Event') {
    const id = await ctx.events.accept(request);
    return { status: 202, headers: { 'x-amzn-requestid': id } };
  }
  const r = await ctx.invoker.invoke(request, undefined, logType === 'Tail');
  const headers: Record<string, string> = {
    'x-amz-executed-version': r.executedVersion,
    'x-amzn-requestid': r.requestId,
    'content-type': 'application/json',
  };
  if (r.functionError !== undefined) headers['x-amz-function-error'] = r.functionError;
  if (logType === 'Tail') headers['x-amz-log-result'] = r.tail.toString('base64');
  return { status: 200, raw: r.payload, headers };
}

/** Thaw's own operations: logs and drain (for operators and benchmarks), code downloads. */
async function logs(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const { name } = target(req);
  ctx.registry.mustVersion(name, '$LATEST');
  const q = req.url.searchParams;
  const afterSeq = intParam(q.get('afterSeq') ?? undefined, 'afterSeq', 0, Number.MAX_SAFE_INTEGER);
  const since = intParam(q.get('since') ?? undefined, 'since', 0, Number.MAX_SAFE_INTEGER);
  const limit = intParam(q.get('limit') ?? undefined, 'limit', 1, 10000);
  const requestId = q.get('requestId') ?? undefined;
  const events = await ctx.logs.query(name, {
    ...(afterSeq === undefined ? {} : { afterSeq }),
    ...(since === undefined ? {} : { since }),
    ...(limit === undefined ? {} : { limit }),
    ...(requestId === undefined ? {} : { requestId }),
  });
  return { status: 200, json: { events } };
}

async function drain(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const ref = parseFunctionRef(req.params.FunctionName ?? '');
  const qualifier = resolveQualifier(ref, req.url.searchParams.get('Qualifier') ?? undefined);
  let version: string | undefined;
  if (qualifier !== undefined) version = ctx.registry.resolve(ref.name, qualifier).version.version;
  else ctx.registry.mustVersion(ref.name, '$LATEST');
  const stopped = await ctx.pool.drain(ref.name, version);
  return { status: 200, json: { FunctionName: ref.name, ...(version === undefined ? {} : { Version: version }), Stopped: stopped } };
}

/** Prometheus text format: invocations, cold starts by start path, start times, environments, cells. */
async function metrics(ctx: ApiContext): Promise<ApiResponse> {
  const m = await ctx.pool.metricsText();
  return { status: 200, raw: Buffer.from(m.body), headers: { 'content-type': m.contentType } };
}

async function downloadCode(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const sha = req.params.Sha ?? '';
  const expires = Number(req.url.searchParams.get('expires') ?? '0');
  const sig = Buffer.from(req.url.searchParams.get('signature') ?? '', 'hex');
  const want = Buffer.from(codeLinkSignature(ctx.linkSecret, sha, expires), 'hex');
  if (!/^[0-9a-f]{64}$/.test(sha) || sig.length !== want.length || !timingSafeEqual(sig, want) || expires < Date.now()) {
    throw new ThawError('AccessDenied', 'Request has expired or the signature does not match.');
  }
  const zip = await ctx.code.zip(sha);
  return { status: 200, raw: zip, headers: { 'content-type': 'application/zip' } };
}

export const invokeRoutes: readonly Route[] = [
  route('POST', '/2015-03-31/functions/{FunctionName}/invocations', 'InvokeFunction', invoke, MAX_SYNC_PAYLOAD),
  route('GET', '/thaw/v1/functions/{FunctionName}/logs', 'GetLogs', logs),
  route('POST', '/thaw/v1/functions/{FunctionName}/drain', 'Drain', drain),
  route('GET', '/thaw/v1/metrics', 'GetMetrics', metrics),
];

/** Routes that carry their own authorisation instead of SigV4. */
export const unsignedRoutes: readonly Route[] = [
  route('GET', '/thaw/v1/code/{Sha}.zip', 'GetCode', downloadCode),
];
