import { ThawError } from '../util/errors.js';
import { CreateAliasInput, TagResourceInput, UpdateAliasInput, parseInput } from '../control/schema.js';
import { renderAlias } from '../control/model.js';
import { parseFunctionRef } from '../control/arn.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam, parseJson } from './http.js';
import { target } from './functions.js';

function createAlias(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = target(req);
  const input = parseInput(CreateAliasInput, parseJson(req.body));
  const a = ctx.registry.createAlias(name, input.Name, input.FunctionVersion, input.Description ?? '', input.RoutingConfig?.AdditionalVersionWeights ?? null);
  return { status: 201, json: renderAlias(a, ctx.region) };
}

function getAlias(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = target(req);
  return { status: 200, json: renderAlias(ctx.registry.mustAlias(name, req.params.Name ?? ''), ctx.region) };
}

function updateAlias(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = target(req);
  const input = parseInput(UpdateAliasInput, parseJson(req.body));
  const weights = input.RoutingConfig === undefined ? undefined : (input.RoutingConfig.AdditionalVersionWeights ?? null);
  const a = ctx.registry.updateAlias(name, req.params.Name ?? '', {
    ...(input.FunctionVersion === undefined ? {} : { version: input.FunctionVersion }),
    ...(input.Description === undefined ? {} : { description: input.Description }),
    ...(weights === undefined ? {} : { weights: weights !== null && Object.keys(weights).length === 0 ? null : weights }),
  }, input.RevisionId);
  return { status: 200, json: renderAlias(a, ctx.region) };
}

function deleteAlias(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = target(req);
  ctx.registry.deleteAlias(name, req.params.Name ?? '');
  return { status: 204 };
}

function listAliases(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = target(req);
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 10000) ?? 50;
  const page = ctx.registry.listAliases(name, req.url.searchParams.get('FunctionVersion') ?? undefined, req.url.searchParams.get('Marker') ?? undefined, max);
  return { status: 200, json: { Aliases: page.items.map((a) => renderAlias(a, ctx.region)), ...(page.next === undefined ? {} : { NextMarker: page.next }) } };
}

/** Tags live on functions; the resource is the function's ARN (unqualified). */
function taggedFunction(req: ApiRequest): string {
  const arn = req.params.Resource ?? '';
  if (!arn.startsWith('arn:')) throw new ThawError('Validation', `1 validation error detected: Value '${arn}' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|layer:[a-zA-Z0-9-_]+)`);
  const ref = parseFunctionRef(arn);
  if (ref.qualifier !== undefined) throw new ThawError('InvalidParameterValue', 'Tags are not supported on function versions or aliases; use the unqualified function ARN.');
  return ref.name;
}

function tagResource(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const name = taggedFunction(req);
  const input = parseInput(TagResourceInput, parseJson(req.body));
  ctx.registry.setTags(name, (t) => ({ ...t, ...input.Tags }));
  return { status: 204 };
}

function untagResource(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const name = taggedFunction(req);
  const keys = req.url.searchParams.getAll('tagKeys');
  ctx.registry.setTags(name, (t) => Object.fromEntries(Object.entries(t).filter(([k]) => !keys.includes(k))));
  return { status: 204 };
}

function listTags(ctx: ApiContext, req: ApiRequest): ApiResponse {
  return { status: 200, json: { Tags: ctx.registry.tags(taggedFunction(req)) } };
}

const A = '/2015-03-31/functions/{FunctionName}/aliases';
export const aliasRoutes: readonly Route[] = [
  route('POST', A, 'CreateAlias', createAlias),
  route('GET', A, 'ListAliases', listAliases),
  route('GET', `${A}/{Name}`, 'GetAlias', getAlias),
  route('PUT', `${A}/{Name}`, 'UpdateAlias', updateAlias),
  route('DELETE', `${A}/{Name}`, 'DeleteAlias', deleteAlias),
  route('POST', '/2017-03-31/tags/{Resource}', 'TagResource', tagResource),
  route('DELETE', '/2017-03-31/tags/{Resource}', 'UntagResource', untagResource),
  route('GET', '/2017-03-31/tags/{Resource}', 'ListTags', listTags),
];
