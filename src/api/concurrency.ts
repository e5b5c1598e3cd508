import { z } from 'zod';
import { ThawError } from '../util/errors.js';
import { parseInput } from '../control/schema.js';
import { functionArn, isVersionNumber, parseFunctionRef, resolveQualifier } from '../control/arn.js';
import { lambdaTime } from '../control/model.js';
import type { ProvisionedView } from '../worker/provisioned.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam, parseJson } from './http.js';

/** Reserved concurrency (PutFunctionConcurrency and friends) and provisioned concurrency configurations. */

const PutFunctionConcurrencyInput = z.object({
  ReservedConcurrentExecutions: z.number({ error: 'Member must not be null' }).int('Member must be an integer')
    .min(0, 'Member must have value greater than or equal to 0'),
}).passthrough();

const PutProvisionedConcurrencyInput = z.object({
  ProvisionedConcurrentExecutions: z.number({ error: 'Member must not be null' }).int('Member must be an integer')
    .min(1, 'Member must have value greater than or equal to 1'),
}).passthrough();

/** The function named in the path; reserved concurrency applies to the function as a whole, never a qualifier. */
function unqualified(ctx: ApiContext, req: ApiRequest): string {
  const ref = parseFunctionRef(req.params.FunctionName ?? '');
  if (ref.qualifier !== undefined) {
    throw new ThawError('InvalidParameterValue', 'Concurrency settings apply to the function as a whole: use the unqualified function name or ARN.');
  }
  ctx.registry.mustVersion(ref.name, '$LATEST');
  return ref.name;
}

function putFunctionConcurrency(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const name = unqualified(ctx, req);
  const input = parseInput(PutFunctionConcurrencyInput, parseJson(req.body));
  ctx.concurrency.setReserved(name, input.ReservedConcurrentExecutions);
  return { status: 200, json: { ReservedConcurrentExecutions: input.ReservedConcurrentExecutions } };
}

function getFunctionConcurrency(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const r = ctx.concurrency.reservedOf(unqualified(ctx, req));
  return { status: 200, json: r === undefined ? {} : { ReservedConcurrentExecutions: r } };
}

function deleteFunctionConcurrency(ctx: ApiContext, req: ApiRequest): ApiResponse {
  ctx.concurrency.deleteReserved(unqualified(ctx, req));
  return { status: 204 };
}

/** The function and the qualifier (required) of a provisioned concurrency request. */
function provisionedTarget(ctx: ApiContext, req: ApiRequest): { name: string; qualifier: string } {
  const ref = parseFunctionRef(req.params.FunctionName ?? '');
  const qualifier = resolveQualifier(ref, req.url.searchParams.get('Qualifier') ?? undefined);
  if (qualifier === undefined) {
    throw new ThawError('Validation', "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null");
  }
  ctx.registry.mustVersion(ref.name, '$LATEST');
  return { name: ref.name, qualifier };
}

function render(ctx: ApiContext, v: ProvisionedView, withArn: boolean): Record<string, unknown> {
  return {
    ...(withArn ? { FunctionArn: functionArn(ctx.region, v.functionName, v.qualifier) } : {}),
    RequestedProvisionedConcurrentExecutions: v.requested,
    AvailableProvisionedConcurrentExecutions: v.available,
    AllocatedProvisionedConcurrentExecutions: v.allocated,
    Status: v.status,
    ...(v.statusReason === undefined ? {} : { StatusReason: v.statusReason }),
    LastModified: lambdaTime(v.lastModified),
  };
}

function putProvisioned(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name, qualifier } = provisionedTarget(ctx, req);
  const input = parseInput(PutProvisionedConcurrencyInput, parseJson(req.body));
  if (qualifier === '$LATEST') {
    throw new ThawError('InvalidParameterValue', 'Provisioned Concurrency Configs cannot be applied to unpublished function versions.');
  }
  // A version number or an alias that exists (ResourceNotFound otherwise).
  ctx.registry.resolve(name, qualifier);
  const v = ctx.provisioned.put(name, qualifier, input.ProvisionedConcurrentExecutions);
  return { status: 202, json: render(ctx, v, false) };
}

const notFound = (): ThawError => new ThawError('ProvisionedConcurrencyConfigNotFound', 'No Provisioned Concurrency Config found for this function');

function getProvisioned(ctx: ApiContext, req: ApiRequest): ApiResponse {
  if (req.url.searchParams.get('List') === 'ALL') return listProvisioned(ctx, req);
  const { name, qualifier } = provisionedTarget(ctx, req);
  if (qualifier !== '$LATEST' && !isVersionNumber(qualifier)) ctx.registry.mustAlias(name, qualifier);
  const v = ctx.provisioned.get(name, qualifier);
  if (v === undefined) throw notFound();
  return { status: 200, json: render(ctx, v, false) };
}

function listProvisioned(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const ref = parseFunctionRef(req.params.FunctionName ?? '');
  ctx.registry.mustVersion(ref.name, '$LATEST');
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 50) ?? 50;
  const marker = req.url.searchParams.get('Marker') ?? undefined;
  const all = ctx.provisioned.list(ref.name).filter((v) => marker === undefined || v.qualifier > marker);
  const page = all.slice(0, max);
  const last = page[page.length - 1];
  return {
    status: 200,
    json: {
      ProvisionedConcurrencyConfigs: page.map((v) => render(ctx, v, true)),
      ...(all.length > max && last !== undefined ? { NextMarker: last.qualifier } : {}),
    },
  };
}

function deleteProvisioned(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const { name, qualifier } = provisionedTarget(ctx, req);
  if (!ctx.provisioned.delete(name, qualifier)) throw notFound();
  return { status: 204 };
}

export const concurrencyRoutes: readonly Route[] = [
  route('PUT', '/2017-10-31/functions/{FunctionName}/concurrency', 'PutFunctionConcurrency', putFunctionConcurrency),
  route('GET', '/2019-09-30/functions/{FunctionName}/concurrency', 'GetFunctionConcurrency', getFunctionConcurrency),
  route('DELETE', '/2017-10-31/functions/{FunctionName}/concurrency', 'DeleteFunctionConcurrency', deleteFunctionConcurrency),
  route('PUT', '/2019-09-30/functions/{FunctionName}/provisioned-concurrency', 'PutProvisionedConcurrencyConfig', putProvisioned),
  route('GET', '/2019-09-30/functions/{FunctionName}/provisioned-concurrency', 'GetProvisionedConcurrencyConfig', getProvisioned),
  route('DELETE', '/2019-09-30/functions/{FunctionName}/provisioned-concurrency', 'DeleteProvisionedConcurrencyConfig', deleteProvisioned),
];
