import { ThawError } from '../util/errors.js';
import { parseInput } from '../control/schema.js';
import { EventInvokeConfigInput } from '../control/event-invoke-schema.js';
import { renderEventInvokeConfig, type EventInvokeSettings } from '../control/event-invoke-config.js';
import { parseFunctionTarget } from '../control/destinations.js';
import { parseFunctionRef } from '../control/arn.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam, parseJson } from './http.js';
import { target } from './functions.js';

/** The function and qualifier a configuration belongs to; the function (and the alias or version) must exist. */
function configTarget(ctx: ApiContext, req: ApiRequest): { name: string; qualifier: string } {
  const t = target(req);
  ctx.registry.resolve(t.name, t.qualifier);
  return { name: t.name, qualifier: t.qualifier ?? '$LATEST' };
}

/** The settings the body names (validated, destinations checked); absent members stay undefined. */
function settingsOf(ctx: ApiContext, name: string, req: ApiRequest): Partial<EventInvokeSettings> {
  const input = parseInput(EventInvokeConfigInput, parseJson(req.body));
  if (input.MaximumRetryAttempts === undefined && input.MaximumEventAgeInSeconds === undefined && input.DestinationConfig === undefined) {
    throw new ThawError('InvalidParameterValue', 'You must specify at least one of error handling or destination setting.');
  }
  const dest = (d: { Destination?: string | undefined } | undefined, what: string): string | null | undefined => {
    if (d === undefined) return undefined;
    if (d.Destination === undefined || d.Destination === '') return null;
    parseFunctionTarget(d.Destination, ctx.region, name, what);
    return d.Destination;
  };
  const out: { -readonly [K in keyof EventInvokeSettings]?: EventInvokeSettings[K] } = {};
  if (input.MaximumRetryAttempts !== undefined) out.maximumRetryAttempts = input.MaximumRetryAttempts;
  if (input.MaximumEventAgeInSeconds !== undefined) out.maximumEventAgeInSeconds = input.MaximumEventAgeInSeconds;
  const onSuccess = dest(input.DestinationConfig?.OnSuccess, 'DestinationConfig.OnSuccess');
  const onFailure = dest(input.DestinationConfig?.OnFailure, 'DestinationConfig.OnFailure');
  if (onSuccess !== undefined) out.onSuccess = onSuccess;
  if (onFailure !== undefined) out.onFailure = onFailure;
  return out;
}

function putConfig(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = configTarget(ctx, req);
  const s = settingsOf(ctx, t.name, req);
  const c = ctx.eventConfigs.put(t.name, t.qualifier, {
    maximumRetryAttempts: s.maximumRetryAttempts ?? null,
    maximumEventAgeInSeconds: s.maximumEventAgeInSeconds ?? null,
    onSuccess: s.onSuccess ?? null,
    onFailure: s.onFailure ?? null,
  });
  return { status: 200, json: renderEventInvokeConfig(c, ctx.region) };
}

function updateConfig(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = configTarget(ctx, req);
  const c = ctx.eventConfigs.update(t.name, t.qualifier, settingsOf(ctx, t.name, req));
  return { status: 200, json: renderEventInvokeConfig(c, ctx.region) };
}

function getConfig(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = configTarget(ctx, req);
  return { status: 200, json: renderEventInvokeConfig(ctx.eventConfigs.mustGet(t.name, t.qualifier), ctx.region) };
}

function deleteConfig(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = configTarget(ctx, req);
  ctx.eventConfigs.delete(t.name, t.qualifier);
  return { status: 204 };
}

function listConfigs(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name } = parseFunctionRef(req.params.FunctionName ?? '');
  ctx.registry.mustVersion(name, '$LATEST');
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 50) ?? 50;
  const marker = req.url.searchParams.get('Marker') ?? undefined;
  const page = ctx.eventConfigs.list(name, marker === '' ? undefined : marker, max);
  return {
    status: 200,
    json: {
      FunctionEventInvokeConfigs: page.items.map((c) => renderEventInvokeConfig(c, ctx.region)),
      ...(page.next === undefined ? {} : { NextMarker: page.next }),
    },
  };
}

const E = '/2019-09-25/functions/{FunctionName}/event-invoke-config';
export const eventInvokeConfigRoutes: readonly Route[] = [
  route('PUT', E, 'PutFunctionEventInvokeConfig', putConfig),
  route('POST', E, 'UpdateFunctionEventInvokeConfig', updateConfig),
  route('GET', E, 'GetFunctionEventInvokeConfig', getConfig),
  route('DELETE', E, 'DeleteFunctionEventInvokeConfig', deleteConfig),
  route('GET', `${E}/list`, 'ListFunctionEventInvokeConfigs', listConfigs),
];
